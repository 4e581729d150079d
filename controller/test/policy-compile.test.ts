import t from 'tap'
import { filterAllows, type FilterRule } from '@warren/protocol'
import { check, createPolicyEngine, parsePolicy, DEFAULT_POLICY_TEXT, type Policy, type PolicyNode } from '../src/policy/index.js'

const users = [{ name: 'alice', email: 'alice@example.com' }, { name: 'bob', email: 'bob@example.com' }, { name: 'carl' }]

function policy (text: string): Policy {
  const r = parsePolicy(text, { users })
  if (r.policy === undefined) throw new Error(r.errors.map(e => e.message).join('\n'))
  return r.policy
}

let nextIp = 1
function node (name: string, owner: string | string[]): PolicyNode {
  const i = nextIp++
  const n: PolicyNode = { id: name, name, tags: Array.isArray(owner) ? owner : [], ipv4: `100.64.0.${i}`, ipv6: `fd7a:115c:a1e0::${i}` }
  if (!Array.isArray(owner)) n.user = owner
  return n
}

const ALL = { first: 0, last: 65535 }
/** MESH is what `*` means as a source: the mesh's IPv4 range (without 100.115.92.0/23) and its IPv6 /48. */
const MESH = ['100.64.0.0/11', '100.96.0.0/12', '100.112.0.0/15', '100.114.0.0/16', '100.115.0.0/18', '100.115.64.0/20', '100.115.80.0/21',
  '100.115.88.0/22', '100.115.94.0/23', '100.115.96.0/19', '100.115.128.0/17', '100.116.0.0/14', '100.120.0.0/13', 'fd7a:115c:a1e0::/48']
const v4 = (n: PolicyNode): string => `${n.ipv4}/32`
const v6 = (n: PolicyNode): string => `${n.ipv6}/128`
const addrs = (...ns: PolicyNode[]): string[] => [...ns.map(v4), ...ns.map(v6)]

nextIp = 1
const aliceLaptop = node('alice-laptop', 'alice')
const alicePhone = node('alice-phone', 'alice')
const bobLaptop = node('bob-laptop', 'bob')
const web = node('web', ['tag:web'])
const db = node('db', ['tag:db'])
const ciRunner = node('ci', ['tag:ci', 'tag:web'])
ciRunner.user = 'alice'
const nodes = [aliceLaptop, alicePhone, bobLaptop, web, db, ciRunner]

const TAGS = '"tagOwners": {"tag:web": ["bob@"], "tag:db": [], "tag:ci": ["alice@"]}'

interface Case {
  name: string
  policy: string
  peers: Record<string, string[]>
  filters: Record<string, FilterRule[]>
}

const cases: Case[] = [
  {
    name: 'default allow-all: everyone is a peer, any mesh source on every port',
    policy: DEFAULT_POLICY_TEXT,
    peers: Object.fromEntries(nodes.map(n => [n.id, nodes.filter(m => m !== n).map(m => m.id)])),
    filters: Object.fromEntries(nodes.map(n => [n.id, [{ srcs: MESH, protos: [1, 6, 17, 58], ports: [ALL] }]]))
  },
  {
    name: 'deny all: no peers, empty filters',
    policy: '{"acls": []}',
    peers: Object.fromEntries(nodes.map(n => [n.id, []])),
    filters: Object.fromEntries(nodes.map(n => [n.id, []]))
  },
  {
    name: 'groups and tags: users reach web, web and ci reach db on 5432/tcp only',
    policy: `{ "groups": {"group:eng": ["alice@example.com", "bob@"]}, ${TAGS},
      "acls": [
        {"action": "accept", "src": ["group:eng"], "dst": ["tag:web:80,443"]},
        {"action": "accept", "src": ["tag:web"], "dst": ["tag:db:5432"], "proto": "tcp"},
      ] }`,
    peers: {
      'alice-laptop': ['web', 'ci'],
      'alice-phone': ['web', 'ci'],
      'bob-laptop': ['web', 'ci'],
      web: ['alice-laptop', 'alice-phone', 'bob-laptop', 'db'],
      db: ['web', 'ci'],
      ci: ['alice-laptop', 'alice-phone', 'bob-laptop', 'db']
    },
    filters: {
      'alice-laptop': [],
      'alice-phone': [],
      'bob-laptop': [],
      web: [
        { srcs: addrs(aliceLaptop, alicePhone, bobLaptop), protos: [1, 58], ports: [ALL] },
        { srcs: addrs(aliceLaptop, alicePhone, bobLaptop), protos: [6, 17], ports: [{ first: 80, last: 80 }, { first: 443, last: 443 }] }
      ],
      db: [{ srcs: addrs(web, ciRunner), protos: [6], ports: [{ first: 5432, last: 5432 }] }],
      ci: [
        { srcs: addrs(aliceLaptop, alicePhone, bobLaptop), protos: [1, 58], ports: [ALL] },
        { srcs: addrs(aliceLaptop, alicePhone, bobLaptop), protos: [6, 17], ports: [{ first: 80, last: 80 }, { first: 443, last: 443 }] }
      ]
    }
  },
  {
    name: 'autogroup:self: each user reaches only their own untagged devices',
    policy: '{"acls": [{"action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self:22"], "proto": "tcp"}]}',
    peers: { 'alice-laptop': ['alice-phone'], 'alice-phone': ['alice-laptop'], 'bob-laptop': [], web: [], db: [], ci: [] },
    filters: {
      'alice-laptop': [{ srcs: addrs(aliceLaptop, alicePhone), protos: [6], ports: [{ first: 22, last: 22 }] }],
      'alice-phone': [{ srcs: addrs(aliceLaptop, alicePhone), protos: [6], ports: [{ first: 22, last: 22 }] }],
      'bob-laptop': [{ srcs: addrs(bobLaptop), protos: [6], ports: [{ first: 22, last: 22 }] }],
      web: [],
      db: [],
      ci: []
    }
  },
  {
    name: 'autogroup:tagged to autogroup:member, udp 53 and icmp (ICMPv4 only, as in Tailscale)',
    policy: `{ ${TAGS}, "acls": [
      {"action": "accept", "src": ["autogroup:tagged"], "dst": ["autogroup:member:53"], "proto": "udp"},
      {"action": "accept", "src": ["autogroup:tagged"], "dst": ["autogroup:member:*"], "proto": "icmp"},
    ] }`,
    peers: {
      'alice-laptop': ['web', 'db', 'ci'],
      'alice-phone': ['web', 'db', 'ci'],
      'bob-laptop': ['web', 'db', 'ci'],
      web: ['alice-laptop', 'alice-phone', 'bob-laptop'],
      db: ['alice-laptop', 'alice-phone', 'bob-laptop'],
      ci: ['alice-laptop', 'alice-phone', 'bob-laptop']
    },
    filters: {
      ...Object.fromEntries([aliceLaptop, alicePhone, bobLaptop].map(n => [n.id, [
        { srcs: addrs(web, db, ciRunner), protos: [1], ports: [ALL] },
        { srcs: addrs(web, db, ciRunner), protos: [17], ports: [{ first: 53, last: 53 }] }
      ]])),
      web: [],
      db: [],
      ci: []
    }
  },
  {
    name: 'IPv6 and IPv4 CIDR sources go into filters as written; nodes inside them are peers',
    policy: `{ ${TAGS}, "hosts": {"lab": "fd7a:115c:a1e0::/126"}, "acls": [
      {"action": "accept", "src": ["lab", "100.64.0.5"], "dst": ["tag:db:5432,5433-5440,5441"], "proto": "tcp"},
    ] }`,
    peers: { 'alice-laptop': ['db'], 'alice-phone': ['db'], 'bob-laptop': ['db'], web: [], db: ['alice-laptop', 'alice-phone', 'bob-laptop'], ci: [] },
    filters: {
      'alice-laptop': [],
      'alice-phone': [],
      'bob-laptop': [],
      web: [],
      db: [{ srcs: ['100.64.0.5/32', 'fd7a:115c:a1e0::/126'], protos: [6], ports: [{ first: 5432, last: 5441 }] }],
      ci: []
    }
  },
  {
    name: 'destinations by IP, IPv6 in brackets and host alias: each reached over its own family; ports of several rules merge',
    policy: `{ "hosts": {"bobs": "100.64.0.3"}, "acls": [
      {"action": "accept", "src": ["alice@"], "dst": ["bobs:22", "[fd7a:115c:a1e0::3]:23-25"], "proto": "tcp"},
      {"action": "accept", "src": ["alice@"], "dst": ["100.64.0.3:26,80"], "proto": "tcp"},
      {"action": "accept", "src": ["carl@"], "dst": ["bob@:8080"]},
    ] }`,
    peers: { 'alice-laptop': ['bob-laptop'], 'alice-phone': ['bob-laptop'], 'bob-laptop': ['alice-laptop', 'alice-phone'], web: [], db: [], ci: [] },
    filters: {
      'alice-laptop': [],
      'alice-phone': [],
      'bob-laptop': [
        { srcs: [v4(aliceLaptop), v4(alicePhone)], protos: [6], ports: [{ first: 22, last: 22 }, { first: 26, last: 26 }, { first: 80, last: 80 }] },
        { srcs: [v6(aliceLaptop), v6(alicePhone)], protos: [6], ports: [{ first: 23, last: 25 }] }
      ],
      web: [],
      db: [],
      ci: []
    }
  },
  {
    name: 'proto numbers: GRE and SCTP',
    policy: `{ ${TAGS}, "acls": [
      {"action": "accept", "src": ["tag:web"], "dst": ["tag:db:*"], "proto": 47},
      {"action": "accept", "src": ["tag:web"], "dst": ["tag:db:9899"], "proto": "sctp"},
    ] }`,
    peers: { 'alice-laptop': [], 'alice-phone': [], 'bob-laptop': [], web: ['db'], db: ['web', 'ci'], ci: ['db'] },
    filters: {
      'alice-laptop': [],
      'alice-phone': [],
      'bob-laptop': [],
      web: [],
      db: [
        { srcs: addrs(web, ciRunner), protos: [47], ports: [ALL] },
        { srcs: addrs(web, ciRunner), protos: [132], ports: [{ first: 9899, last: 9899 }] }
      ],
      ci: []
    }
  },
  {
    name: 'a tagged node has no user identity: alice@ does not match ci (owned by alice, tagged)',
    policy: '{ "acls": [{"action": "accept", "src": ["*"], "dst": ["alice@:443"], "proto": "tcp"}] }',
    peers: {
      'alice-laptop': ['alice-phone', 'bob-laptop', 'web', 'db', 'ci'],
      'alice-phone': ['alice-laptop', 'bob-laptop', 'web', 'db', 'ci'],
      'bob-laptop': ['alice-laptop', 'alice-phone'],
      web: ['alice-laptop', 'alice-phone'],
      db: ['alice-laptop', 'alice-phone'],
      ci: ['alice-laptop', 'alice-phone']
    },
    filters: {
      'alice-laptop': [{ srcs: MESH, protos: [6], ports: [{ first: 443, last: 443 }] }],
      'alice-phone': [{ srcs: MESH, protos: [6], ports: [{ first: 443, last: 443 }] }],
      'bob-laptop': [],
      web: [],
      db: [],
      ci: []
    }
  }
]

t.test('compiler tables: peers and filters per node', async t => {
  for (const c of cases) {
    t.test(c.name, async t => {
      const engine = createPolicyEngine(policy(c.policy), users)
      engine.setNodes(nodes)
      for (const n of nodes) {
        t.same([...engine.peersOf(n.id)].sort(), [...c.peers[n.id]!].sort(), `peers of ${n.id}`)
        t.same(engine.filterFor(n.id), c.filters[n.id], `filter of ${n.id}`)
      }
    })
  }
})

t.test('the same access gives the same filter whatever the rule order', async t => {
  const a = createPolicyEngine(policy(`{ ${TAGS}, "acls": [
    {"action": "accept", "src": ["bob@"], "dst": ["tag:db:80"]},
    {"action": "accept", "src": ["alice@"], "dst": ["tag:db:81-90"]},
    {"action": "accept", "src": ["bob@"], "dst": ["tag:db:81"]} ] }`), users)
  const b = createPolicyEngine(policy(`{ ${TAGS}, "acls": [
    {"action": "accept", "src": ["alice@", "bob@"], "dst": ["tag:db:81-90"]},
    {"action": "accept", "src": ["bob@"], "dst": ["tag:db:80-81"]} ] }`), users)
  a.setNodes(nodes)
  b.setNodes(nodes)
  t.not(JSON.stringify(a.filterFor('db')), JSON.stringify(b.filterFor('db')), 'different access, different filter')
  const c = createPolicyEngine(policy(`{ ${TAGS}, "acls": [
    {"action": "accept", "src": ["alice@"], "dst": ["tag:db:81-90"]},
    {"action": "accept", "src": ["bob@"], "dst": ["tag:db:80-81"]} ] }`), users)
  c.setNodes([...nodes].reverse())
  t.same(c.filterFor('db'), a.filterFor('db'), 'same access, same filter')
  t.same(a.filterFor('db'), [
    { srcs: addrs(aliceLaptop, alicePhone, bobLaptop), protos: [1, 58], ports: [ALL] },
    { srcs: addrs(bobLaptop), protos: [6, 17], ports: [{ first: 80, last: 81 }] },
    { srcs: addrs(aliceLaptop, alicePhone), protos: [6, 17], ports: [{ first: 81, last: 90 }] }
  ])
})

t.test('upsert and remove return exactly the nodes whose peers or filter changed', async t => {
  const p = policy(`{ "groups": {"group:eng": ["alice@", "bob@"]}, ${TAGS}, "acls": [
    {"action": "accept", "src": ["group:eng"], "dst": ["tag:web:443"]},
    {"action": "accept", "src": ["tag:web"], "dst": ["tag:db:5432"]},
    {"action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self:*"]} ] }`)
  const engine = createPolicyEngine(p, users)
  engine.setNodes(nodes)

  const bobPhone = { id: 'bob-phone', name: 'bob-phone', user: 'bob', tags: [], ipv4: '100.64.0.50', ipv6: 'fd7a:115c:a1e0::50' }
  let change = engine.upsertNode(bobPhone)
  t.same([...change].sort(), ['bob-laptop', 'bob-phone', 'ci', 'web'], 'new member: its user\'s device and the web servers')
  t.same([...change.peersGained].sort(), ['bob-laptop', 'ci', 'web'])
  t.same([...change.filterChanged].sort(), ['bob-laptop', 'bob-phone', 'ci', 'web'])

  const webFilter = engine.filterFor('web')
  const dbFilter = engine.filterFor('db')
  change = engine.upsertNode({ ...bobPhone, name: 'bobs-phone' })
  t.same([...change], [], 'a rename changes no peers or filters')

  change = engine.upsertNode({ ...bobPhone, ipv4: '100.64.0.51' })
  t.same([...change].sort(), ['bob-laptop', 'bob-phone', 'ci', 'web'], 'an address change reaches every filter that lists it')
  t.same([...change.peersGained], [], 'but peers stay')
  t.not(engine.filterFor('web'), webFilter, 'a changed filter is a new array')
  t.equal(engine.filterFor('db'), dbFilter, 'an unchanged filter is the same array')

  change = engine.upsertNode({ ...bobPhone, tags: ['tag:db'] })
  t.same([...change].sort(), ['bob-laptop', 'bob-phone', 'ci', 'web'], 'retagged: leaves its user\'s devices; the web servers now reach it')
  t.same([...change.peersLost].sort(), ['bob-laptop'])
  t.same([...engine.peersOf('bob-phone')].sort(), ['ci', 'web'])

  change = engine.removeNode('bob-phone')
  t.same([...change].sort(), ['ci', 'web'], 'removed: its peers lose it; filters of db did not list it')
  t.same([...engine.removeNode('bob-phone')], [], 'removing twice changes nothing')

  const loner = { id: 'loner', name: 'loner', tags: ['tag:db'], ipv4: '100.64.0.60', ipv6: 'fd7a:115c:a1e0::60' }
  const deny = createPolicyEngine(policy('{"acls": []}'), users)
  deny.setNodes(nodes)
  t.same([...deny.upsertNode(loner)], [], 'deny-all: a new node affects nobody, not even itself')
})

t.test('everyone reaches everyone: peers are a snapshot of all nodes without the node itself', async t => {
  const engine = createPolicyEngine(policy(DEFAULT_POLICY_TEXT), users)
  engine.setNodes(nodes)
  const before = engine.peersOf('web')
  t.equal(before.size, nodes.length - 1)
  t.notOk(before.has('web'))
  t.ok(before.has('db'))
  const extra = { id: 'extra', name: 'extra', user: 'carl', tags: [], ipv4: '100.64.0.70', ipv6: 'fd7a:115c:a1e0::70' }
  const change = engine.upsertNode(extra)
  t.same([...change].sort(), [...nodes.map(n => n.id), 'extra'].sort(), 'everyone gains the new peer')
  t.same([...change.filterChanged], ['extra'], 'filters of * do not list nodes, so only the new node\'s own filter is new')
  t.notOk(before.has('extra'), 'an earlier answer is a snapshot')
  t.ok(engine.peersOf('web').has('extra'))
  t.equal(engine.peersOf('web').size, nodes.length)
  t.same([...engine.peersOf('nobody')], [], 'unknown node: no peers')
  t.same(engine.filterFor('nobody'), [])
})

t.test('setPolicy swaps the policy and reports the nodes whose result changed', async t => {
  const engine = createPolicyEngine(policy(`{ ${TAGS}, "acls": [{"action": "accept", "src": ["tag:web"], "dst": ["tag:db:5432"]}] }`), users)
  engine.setNodes(nodes)
  const changed = engine.setPolicy(policy(`{ ${TAGS}, "acls": [
    {"action": "accept", "src": ["tag:web"], "dst": ["tag:db:5432"]},
    {"action": "accept", "src": ["bob@"], "dst": ["alice@:22"]} ] }`), users)
  t.same([...changed].sort(), ['alice-laptop', 'alice-phone', 'bob-laptop'])
  t.same([...engine.setPolicy(engine.policy, users)], [], 'the same policy again changes nothing')
  t.same([...engine.peersOf('bob-laptop')].sort(), ['alice-laptop', 'alice-phone'])
})

t.test('* as a source is the mesh\'s ranges (the controller\'s IPv6 /48) and the subnet routes routers serve, not any address', async t => {
  const engine = createPolicyEngine(policy(`{ ${TAGS}, "acls": [{"action": "accept", "src": ["*"], "dst": ["tag:db:5432"], "proto": "tcp"}] }`), users,
    { meshIpv6: 'fd12:3456:789a::/48' })
  engine.setNodes(nodes)
  const v4Mesh = MESH.slice(0, -1)
  t.same(engine.filterFor('db'), [{ srcs: [...v4Mesh, 'fd12:3456:789a::/48'], protos: [6], ports: [{ first: 5432, last: 5432 }] }])
  t.notOk(filterAllows(engine.filterFor('db'), { src: '203.0.113.9', proto: 6, dport: 5432 }), 'an address outside the mesh is not *')
  t.notOk(filterAllows(engine.filterFor('db'), { src: '100.115.92.7', proto: 6, dport: 5432 }), 'nor is the reserved 100.115.92.0/23')

  const router = { id: 'router', name: 'router', tags: ['tag:web'], ipv4: '100.64.0.80', ipv6: 'fd12:3456:789a::80', advertisedRoutes: ['192.168.1.0/24', '10.9.0.0/16', '0.0.0.0/0'], approvedRoutes: ['192.168.1.0/24', '0.0.0.0/0', '172.16.0.0/12'] }
  let change = engine.upsertNode(router)
  t.ok(change.filterChanged.has('db'), 'a router joining changes the filters of rules from *')
  t.ok(filterAllows(engine.filterFor('db'), { src: '192.168.1.20', proto: 6, dport: 5432 }), 'an approved, advertised route is a source of *')
  t.notOk(filterAllows(engine.filterFor('db'), { src: '10.9.0.1', proto: 6, dport: 5432 }), 'an advertised route that is not approved is not')
  t.notOk(filterAllows(engine.filterFor('db'), { src: '172.16.0.1', proto: 6, dport: 5432 }), 'an approved route that is not advertised is not')
  t.notOk(filterAllows(engine.filterFor('db'), { src: '203.0.113.9', proto: 6, dport: 5432 }), 'an exit node\'s default route is not')

  change = engine.upsertNode({ ...router, approvedRoutes: [] })
  t.ok(change.filterChanged.has('db'), 'withdrawing the approval changes them again')
  t.notOk(filterAllows(engine.filterFor('db'), { src: '192.168.1.20', proto: 6, dport: 5432 }))
  change = engine.upsertNode({ ...router, approvedRoutes: [], name: 'router-2' })
  t.same([...change], [], 'a router change that leaves its routes alone changes nothing')
})

t.test('a host or CIDR destination is reached over its own address family only', async t => {
  const engine = createPolicyEngine(policy(`{ ${TAGS}, "hosts": {"db4": "${db.ipv4}"}, "acls": [
    {"action": "accept", "src": ["alice@"], "dst": ["db4:5432"], "proto": "tcp"},
    {"action": "accept", "src": ["bob@"], "dst": ["[${db.ipv6}]:22", "fd7a:115c:a1e0::/48:80"], "proto": "tcp"},
    {"action": "accept", "src": ["tag:web"], "dst": ["tag:db:9000"], "proto": "tcp"} ] }`), users)
  engine.setNodes(nodes)
  const f = engine.filterFor('db')
  const allows = (src: string, dport: number): boolean => filterAllows(f, { src, proto: 6, dport })
  t.ok(allows(aliceLaptop.ipv4, 5432), 'the host alias\'s IPv4 address: from alice\'s IPv4 address')
  t.notOk(allows(aliceLaptop.ipv6, 5432), 'not from her IPv6 address, which could only reach db\'s IPv6 address')
  t.ok(allows(bobLaptop.ipv6, 22))
  t.notOk(allows(bobLaptop.ipv4, 22), 'an IPv6 destination: IPv6 sources only')
  t.ok(allows(bobLaptop.ipv6, 80))
  t.notOk(allows(bobLaptop.ipv4, 80), 'an IPv6 CIDR destination: IPv6 sources only')
  t.ok(allows(web.ipv4, 9000) && allows(web.ipv6, 9000), 'a tag destination: both families')
  t.ok(check(policy(`{ ${TAGS}, "hosts": {"db4": "${db.ipv4}"}, "acls": [{"action": "accept", "src": ["alice@"], "dst": ["db4:5432"]}] }`),
    { user: 'alice', ips: [aliceLaptop.ipv4] }, 'db4', 'tcp', 5432, { users }).allowed, 'check agrees: from IPv4')
  t.notOk(check(policy(`{ ${TAGS}, "hosts": {"db4": "${db.ipv4}"}, "acls": [{"action": "accept", "src": ["alice@"], "dst": ["db4:5432"]}] }`),
    { user: 'alice', ips: [aliceLaptop.ipv6] }, 'db4', 'tcp', 5432, { users }).allowed, 'and from IPv6: denied')
})
