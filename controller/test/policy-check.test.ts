import t from 'tap'
import { check, diff, explain, parsePolicy, runTests, tagOwnersAllow, validatePolicy, defaultPolicy, type Policy, type PolicyNode, type PolicyUser } from '../src/policy/index.js'
import { POLICY } from './policy-fixtures.js'

const users = [{ name: 'alice', email: 'alice@example.com' }, { name: 'bob', email: 'bob@example.com' }, { name: 'carl' }]

function policy (text: string): Policy {
  const r = parsePolicy(text, { users })
  if (r.policy === undefined) throw new Error(r.errors.map(e => e.message).join('\n'))
  return r.policy
}

const p = policy(POLICY)

t.test('check answers on identities, before any device has joined', async t => {
  const cases: Array<[string, string, string | number | undefined, number, boolean, number[]]> = [
    ['alice@', 'tag:web', 'tcp', 443, true, [0]],
    ['alice@example.com', 'tag:web', 6, 80, true, [0]],
    ['alice@', 'tag:web', 'udp', 443, true, [0]],
    ['alice@', 'tag:web', 'tcp', 22, false, []],
    ['dora@', 'tag:web', 'tcp', 443, true, [0]],
    ['bob@', 'tag:web', 'tcp', 443, false, []],
    ['tag:web', 'tag:db', 'tcp', 5432, true, [1]],
    ['tag:web', 'tag:db', 'udp', 5432, false, []],
    ['tag:web', 'db-primary', 'tcp', 5432, true, [1]],
    ['tag:web', '100.64.0.10', 'tcp', 5432, true, [1]],
    ['tag:db', 'tag:web', 'tcp', 5432, false, []],
    ['192.0.2.7', 'tag:web', 'tcp', 22, true, [2]],
    ['office', 'tag:web', 'tcp', 22, true, [2]],
    ['198.51.100.1', 'tag:web', 'tcp', 22, false, []],
    ['alice@', 'alice@', 'tcp', 3000, true, [3]],
    ['alice@', 'alice@example.com', 'icmp', 0, true, [3]],
    ['alice@', 'bob@', 'tcp', 3000, false, []],
    ['tag:web', 'tag:web', 'tcp', 3000, false, []],
    ['fd7a:115c:a1e0::99', 'fd7a:115c:a1e0::10', 'udp', 53, true, [4]],
    ['fd7a:115c:a1e0::99', 'fd7a:115c:a1e0::10', 'tcp', 53, false, []],
    ['alice@', 'tag:web', 'icmp', 0, true, [0]],
    ['alice@', 'tag:web', 58, 0, true, [0]],
    ['alice@', 'tag:web', 'gre', 0, false, []],
    ['tag:web', 'tag:db', 'icmp', 0, false, []]
  ]
  for (const [src, dst, proto, port, allowed, rules] of cases) {
    const r = check(p, src, dst, proto, port, { users })
    t.equal(r.allowed, allowed, `${src} -> ${dst}:${port}/${String(proto)}`)
    t.same(r.rules.map(x => x.index), rules, 'matching rules')
  }
  t.same(check(p, 'alice@', 'tag:web', 'tcp', 443, { users }).rules, [{ index: 0, line: 7 }], 'rules carry their line')
  t.throws(() => check(p, 'group:eng', 'tag:web', 'tcp', 443), /group:eng is a set, not one identity/)
  t.throws(() => check(p, 'tag:nope', 'tag:web', 'tcp', 443), /tag tag:nope is not in the policy's tagOwners/)
  t.throws(() => check(p, 'alice', 'tag:web', 'tcp', 443, { users }), /"alice" is not a user .* \(did you mean alice@\?\)/)
  t.throws(() => check(p, 'alice@', 'tag:web', 'tpc', 443), /unknown proto "tpc"/)
})

t.test('check with nodes: node names and node IPs stand for the node', async t => {
  const nodes: PolicyNode[] = [
    { id: 'n1', name: 'laptop', user: 'alice', tags: [], ipv4: '100.64.0.1', ipv6: 'fd7a:115c:a1e0::1' },
    { id: 'n2', name: 'www', tags: ['tag:web'], ipv4: '100.64.0.2', ipv6: 'fd7a:115c:a1e0::2' }
  ]
  t.ok(check(p, 'laptop', 'www', 'tcp', 443, { users, nodes }).allowed)
  t.ok(check(p, '100.64.0.1', '100.64.0.2', 'tcp', 443, { users, nodes }).allowed)
  t.notOk(check(p, '100.64.0.1', '100.64.0.2', 'tcp', 443, { users }).allowed, 'without nodes an IP is only an address')
})

t.test('explain names the rules, or says nothing allows the flow', async t => {
  const yes = explain(p, 'alice@', 'tag:web', 443, 'tcp', { users })
  t.equal(yes.allowed, true)
  t.same(yes.rules.map(r => [r.index, r.line]), [[0, 7]])
  t.equal(yes.message, 'alice@ -> tag:web:443/tcp is allowed by:\n  rule 1 (line 7): { "action": "accept", "src": ["group:eng"], "dst": ["tag:web:80,443"] }')
  const no = explain(p, 'bob@', 'tag:db', 5432, undefined, { users })
  t.equal(no.allowed, false)
  t.equal(no.message, 'nothing allows bob@ to reach tag:db:5432/tcp')
  t.equal(explain(p, 'tag:db', 'tag:web', 0, 'icmp').message, 'nothing allows tag:db to reach tag:web over icmp')
})

t.test('runTests reports each failed expectation at its line with the reason', async t => {
  const withTests = policy(`{
  "tagOwners": { "tag:web": [], "tag:db": [] },
  "acls": [ { "action": "accept", "src": ["tag:web"], "dst": ["tag:db:5432"] } ],
  "tests": [
    { "src": "tag:web", "accept": ["tag:db:5432"], "deny": ["tag:db:22"] },
    { "src": "tag:web", "proto": "udp", "accept": ["tag:db:5432"] },
    { "src": "tag:db", "accept": ["tag:web:5432"], "deny": ["tag:web:80"] },
    { "src": "tag:web", "deny": ["tag:db:5432"] },
  ],
}`)
  t.same(runTests(withTests, users).map(e => e.message), [
    '7:35: test 3: tag:db -> tag:web:5432/tcp expected accept but is denied: no rule matches',
    '8:34: test 4: tag:web -> tag:db:5432/tcp expected deny but is allowed by rule 1 (line 3)'
  ])
  t.same(runTests(p, users), [], 'a policy without tests passes')
})

t.test('a group as a test source: the test holds for each member, and names the member it fails for', async t => {
  const withGroup = policy(`{
  "groups": { "group:eng": ["alice@", "bob@example.com"], "group:none": [] },
  "tagOwners": { "tag:db": [] },
  "acls": [ { "action": "accept", "src": ["group:eng"], "dst": ["tag:db:5432"] }, { "action": "accept", "src": ["alice@"], "dst": ["tag:db:22"] } ],
  "tests": [
    { "src": "group:eng", "accept": ["tag:db:5432"], "deny": ["tag:db:80"] },
    { "src": "group:eng", "accept": ["tag:db:22"] },
    { "src": "group:none", "accept": ["tag:db:22"] },
  ],
}`)
  t.same(runTests(withGroup, users).map(e => e.message), [
    '7:38: test 2: group:eng (bob@example.com) -> tag:db:22/tcp expected accept but is denied: no rule matches',
    '8:14: test 3: group:none has no members, so the test checks nothing'
  ])
})

t.test('test targets are one address: CIDRs and host aliases of ranges are refused, single-address aliases work', async t => {
  const r = parsePolicy(`{"hosts": {"net": "10.0.0.0/8", "one": "100.64.0.9"}, "acls": [], "tests": [
    {"src": "alice@", "deny": ["10.0.0.0/8:22", "net:22", "100.64.0.9/32:22", "one:22", "100.64.0.9:22"]}]}`, { users })
  t.same(r.errors.map(e => e.message), [
    '2:32: tests name one address, not the range 10.0.0.0/8: write a single address such as 10.0.0.0',
    '2:49: tests name one address, not the range net (10.0.0.0/8): write a single address such as 10.0.0.0',
    '2:59: tests name one address, not the range 100.64.0.9/32: write a single address such as 100.64.0.9'
  ])
})

t.test('validatePolicy refuses a policy whose tests fail, with which test and why', async t => {
  const text = '{"tagOwners": {"tag:db": []}, "acls": [], "tests": [{"src": "alice@", "accept": ["tag:db:5432"]}]}'
  const r = validatePolicy(text, users)
  t.equal(r.policy, undefined)
  t.same(r.errors.map(e => e.message), ['1:82: test 1: alice@ -> tag:db:5432/tcp expected accept but is denied: no rule matches'])
  const good = validatePolicy('{"tagOwners": {"tag:db": []}, "acls": [], "tests": [{"src": "alice@", "deny": ["tag:db:5432"]}]}', users)
  t.ok(good.policy)
  t.same(good.errors, [])
})

t.test('tagOwnersAllow: by name, email, group, autogroup:member; never for unknown tags', async t => {
  const owners = policy(`{ "groups": {"group:ops": ["bob@example.com"]},
    "tagOwners": { "tag:a": ["alice@"], "tag:b": ["group:ops"], "tag:c": ["autogroup:member"], "tag:d": [], "tag:e": ["alice@example.com", "tag:a"] } }`)
  const alice = { name: 'alice', email: 'alice@example.com' }
  const bob = { name: 'bob', email: 'bob@example.com' }
  const cases: Array<[PolicyUser | string, string, boolean]> = [
    [alice, 'tag:a', true], ['alice', 'tag:a', true], [bob, 'tag:a', false],
    [bob, 'tag:b', true], [alice, 'tag:b', false], [{ name: 'bob' }, 'tag:b', false],
    [alice, 'tag:c', true], ['carl', 'tag:c', true],
    [alice, 'tag:d', false], [alice, 'tag:e', true], [bob, 'tag:e', false], [alice, 'tag:zzz', false]
  ]
  for (const [user, tag, want] of cases) t.equal(tagOwnersAllow(owners, user, tag), want, `${JSON.stringify(user)} ${tag}`)
})

t.test('diff lists access gained and lost, by identity and by node name', async t => {
  const before = policy(`{ "tagOwners": {"tag:db": []}, "acls": [
    { "action": "accept", "src": ["alice@"], "dst": ["tag:db:5432,22"], "proto": "tcp" } ] }`)
  const after = policy(`{ "tagOwners": {"tag:db": []}, "acls": [
    { "action": "accept", "src": ["alice@", "bob@"], "dst": ["tag:db:5432"], "proto": "tcp" } ] }`)
  const nodes: PolicyNode[] = [
    { id: 'n1', name: 'alice-laptop', user: 'alice', tags: [], ipv4: '100.64.0.1', ipv6: 'fd7a:115c:a1e0::1' },
    { id: 'n2', name: 'bob-laptop', user: 'bob', tags: [], ipv4: '100.64.0.2', ipv6: 'fd7a:115c:a1e0::2' },
    { id: 'n3', name: 'db', tags: ['tag:db'], ipv4: '100.64.0.3', ipv6: 'fd7a:115c:a1e0::3' }
  ]
  const d = diff(before, after, nodes, users)
  t.same(d.gained, [
    { kind: 'identity', src: 'bob@', dst: 'tag:db', proto: 'tcp', ports: '5432' },
    { kind: 'node', src: 'bob-laptop', dst: 'db', proto: 'tcp', ports: '5432' }
  ])
  t.same(d.lost, [
    { kind: 'identity', src: 'alice@', dst: 'tag:db', proto: 'tcp', ports: '22' },
    { kind: 'node', src: 'alice-laptop', dst: 'db', proto: 'tcp', ports: '22' }
  ])
  const same = diff(before, before, nodes, users)
  t.same(same, { gained: [], lost: [], caps: [] }, 'no change, no diff')
  const fromDefault = diff(defaultPolicy(), after, nodes, users)
  t.same(fromDefault.lost.filter(a => a.kind === 'node' && a.dst === 'alice-laptop'), [
    { kind: 'node', src: '*', dst: 'alice-laptop', proto: 'icmp,tcp,udp,icmpv6', ports: '*' }
  ], 'leaving allow-all loses * -> every node, protocols with the same ports on one row')
  t.ok(fromDefault.lost.some(a => a.kind === 'identity' && a.src === '(other users)' && a.dst === 'tag:db' && a.ports === '*'),
    'users the policies do not name are shown once, as (other users)')
})
