import t from 'tap'
import { filterAllows } from '@warren/protocol'
import { check, createPolicyEngine, diff, emailResolution, parseGrantIp, parsePolicy, type Policy, type PolicyNode } from '../src/policy/index.js'

// Tailscale's `grants` (network part): src, dst (aliases without ports) and ip, compiled
// by the same engine as acls.

const users = [{ name: 'alice', email: 'alice@example.com' }, { name: 'bob', email: 'bob@example.org' }]
const OWNERS = '"tagOwners": { "tag:web": ["alice@"], "tag:db": ["alice@"] }'

function policy (grants: string): Policy {
  const r = parsePolicy(`{ ${OWNERS}, "grants": ${grants} }`, { users })
  if (r.policy === undefined) throw new Error(r.errors.map(e => e.message).join('\n'))
  return r.policy
}

function errors (grants: string): string[] {
  return parsePolicy(`{ ${OWNERS}, "grants": ${grants} }`, { users }).errors.map(e => e.message.replace(/^\d+:\d+: /, ''))
}

const web: PolicyNode = { id: 'web', name: 'web', tags: ['tag:web'], ipv4: '100.64.0.1', ipv6: 'fd7a:115c:a1e0::1' }
const db: PolicyNode = { id: 'db', name: 'db', tags: ['tag:db'], ipv4: '100.64.0.2', ipv6: 'fd7a:115c:a1e0::2' }
const laptop: PolicyNode = { id: 'laptop', name: 'laptop', user: 'alice', tags: [], ipv4: '100.64.0.3', ipv6: 'fd7a:115c:a1e0::3' }
const phone: PolicyNode = { id: 'phone', name: 'phone', user: 'bob', tags: [], ipv4: '100.64.0.4', ipv6: 'fd7a:115c:a1e0::4' }
const NODES = [web, db, laptop, phone]

/** reaches says whether `from` may open proto/port on `to`, by `to`'s compiled filter. */
function reaches (p: Policy, from: PolicyNode, to: PolicyNode, proto: number, port: number): boolean {
  const engine = createPolicyEngine(p, users)
  engine.setNodes(NODES)
  return filterAllows(engine.filterFor(to.id), { src: from.ipv4, proto, dport: port })
}

t.test('ip entries: *, ports alone, proto:ports, protocol numbers', async t => {
  const defaults = [1, 6, 17, 58]
  t.same(parseGrantIp('*'), { protos: defaults, ports: [{ first: 0, last: 65535 }] })
  t.same(parseGrantIp('tcp:443'), { protos: [6], ports: [{ first: 443, last: 443 }] })
  t.same(parseGrantIp('80-90'), { protos: defaults, ports: [{ first: 80, last: 90 }] }, 'ports alone: TCP, UDP and ICMP, as in Tailscale')
  t.same(parseGrantIp('udp:53,5353'), { protos: [17], ports: [{ first: 53, last: 53 }, { first: 5353, last: 5353 }] })
  t.same(parseGrantIp('icmp:*'), { protos: [1], ports: [{ first: 0, last: 65535 }] })
  t.same(parseGrantIp('47:*'), { protos: [47], ports: [{ first: 0, last: 65535 }] }, 'an IANA number (GRE)')
  t.match(parseGrantIp('icmp'), /bad ports "icmp" in "icmp"/, 'a protocol needs ports (icmp:*), as Tailscale says')
  t.match(parseGrantIp('tcp:0'), /bad ports "0"/, 'port 0 is not a port')
  t.match(parseGrantIp('tcpp:22'), /unknown protocol "tcpp"/)
  t.match(parseGrantIp('icmp:22'), /icmp has no ports, so write icmp:\*/)
})

t.test('a grant opens its ports on its destinations, for its sources only', async t => {
  const p = policy('[{ "src": ["alice@"], "dst": ["tag:web"], "ip": ["tcp:443", "udp:53"] }]')
  t.ok(reaches(p, laptop, web, 6, 443), 'alice reaches web on tcp 443')
  t.ok(reaches(p, laptop, web, 17, 53), 'and on udp 53')
  t.notOk(reaches(p, laptop, web, 17, 443), 'not udp 443: each entry keeps its own protocol')
  t.notOk(reaches(p, laptop, web, 6, 53), 'nor tcp 53')
  t.notOk(reaches(p, phone, web, 6, 443), 'bob is not a source')
  t.notOk(reaches(p, laptop, db, 6, 443), 'db is not a destination')
  t.same(check(p, 'alice@', 'tag:web', 'tcp', 443, { users }), { allowed: true, rules: [{ index: 0, line: 1 }] }, 'check names the grant once')
})

t.test('grants and acls together: grants are numbered after the acls', async t => {
  const r = parsePolicy(`{ ${OWNERS},
    "acls": [{ "action": "accept", "src": ["alice@"], "dst": ["tag:db:5432"] }],
    "grants": [{ "src": ["bob@"], "dst": ["tag:web"], "ip": ["*"] }] }`, { users })
  t.same(r.errors, [])
  t.same(r.warnings, [], 'grants alone are a policy: no allow-all warning')
  const p = r.policy!
  t.ok(reaches(p, laptop, db, 6, 5432))
  t.ok(reaches(p, phone, web, 6, 8080))
  t.notOk(reaches(p, phone, db, 6, 5432))
  t.same(check(p, 'bob@', 'tag:web', 'udp', 9, { users }).rules, [{ index: 1, line: 3 }])
})

t.test('a policy of grants only denies what no grant allows; "grants": [] denies everything', async t => {
  t.notOk(reaches(policy('[]'), laptop, web, 6, 22))
  t.notOk(reaches(policy('[{ "src": ["*"], "dst": ["tag:db"], "ip": ["22"] }]'), laptop, web, 6, 22))
})

t.test('user:*@domain, autogroup:danger-all and autogroup:self in grants', async t => {
  const domain = policy('[{ "src": ["user:*@example.com"], "dst": ["tag:web"], "ip": ["22"] }]')
  t.ok(reaches(domain, laptop, web, 6, 22), 'alice@example.com is in the domain')
  t.notOk(reaches(domain, phone, web, 6, 22), 'bob@example.org is not')
  const any = policy('[{ "src": ["autogroup:danger-all"], "dst": ["tag:web"], "ip": ["tcp:22"] }]')
  const engine = createPolicyEngine(any, users)
  engine.setNodes(NODES)
  t.ok(filterAllows(engine.filterFor('web'), { src: '203.0.113.9', proto: 6, dport: 22 }), 'danger-all is every address, not only the mesh')
  const self = policy('[{ "src": ["autogroup:member"], "dst": ["autogroup:self"], "ip": ["*"] }]')
  t.ok(reaches(self, laptop, laptop, 6, 22))
  t.notOk(reaches(self, phone, laptop, 6, 22), 'only the user\'s own devices')
})

t.test('bad grants are refused as Tailscale refuses them, with what to write', async t => {
  t.same(errors('[{ "src": ["*"], "dst": ["*"] }]'), ['grant 1 (grants[0]) grants nothing: "ip" and "app" are both missing or empty (add "ip": ["*"] for all traffic, ports such as "ip": ["tcp:443"], or capabilities such as "app": {"example.com/cap/web": [{}]})'])
  t.same(errors('[{ "src": ["*"], "dst": ["*"], "ip": [] }]'), ['grant 1 (grants[0]) grants nothing: "ip" and "app" are both missing or empty (add "ip": ["*"] for all traffic, ports such as "ip": ["tcp:443"], or capabilities such as "app": {"example.com/cap/web": [{}]})'])
  t.same(errors('[{ "src": ["*"], "dst": ["0.0.0.0/0"], "ip": ["*"] }]'), ['dst "0.0.0.0/0": to allow all IP addresses, use "*" or "autogroup:internet"'])
  t.same(errors('[{ "src": ["*"], "dst": ["::/0"], "ip": ["*"] }]'), ['dst "::/0": to allow all IP addresses, use "*" or "autogroup:internet"'])
  t.same(errors('[{ "src": ["*"], "dst": ["tag:web:443"], "ip": ["*"] }]'),
    ['dst "tag:web:443" has ports, but a grant\'s destinations name only hosts: ports go in "ip" (write "dst": ["tag:web"], "ip": ["443"])'])
  t.same(errors('[{ "src": ["*"], "dst": ["autogroup:self"], "ip": ["*"] }]'),
    ['grant 1 (grants[0]): "*" cannot reach autogroup:self, which means the source user\'s own devices; its sources must be users, groups, autogroup:member (move "*" to a rule without autogroup:self)'],
    'a grant to autogroup:self needs sources that are users; * is refused, as in Tailscale')
  t.same(errors('[{ "src": ["*"], "dst": ["autogroup:danger-all"], "ip": ["*"] }]'),
    ['cannot use autogroup:danger-all as a destination: it means every address, so it is only a source (use * for every node)'])
  t.same(errors('[{ "src": ["tag:nope"], "dst": ["*"], "ip": ["icmp"] }]').length, 2, 'every error is reported at once')
  t.same(errors('[{ "src": ["*"], "dst": ["*"], "ip": ["*"], "proto": "tcp" }]'), ['unknown key "proto" in grant 1 (grants[0])'])
})

t.test('user:*@domain: diff names each user of the domain; a new user of the domain changes what the policy means', async t => {
  const before = policy('[]')
  const after = policy('[{ "src": ["user:*@example.com"], "dst": ["tag:web"], "ip": ["tcp:22"] }]')
  const d = diff(before, after, NODES, users)
  t.same(d.gained.filter(a => a.kind === 'identity'), [{ kind: 'identity', src: 'alice@', dst: 'tag:web', proto: 'tcp', ports: '22' }],
    'alice is named, not hidden among the other users')
  const carol = { name: 'carol', email: 'carol@example.com' }
  t.not(emailResolution(after, [...users, carol]), emailResolution(after, users), 'a new user of the domain is a change')
  t.equal(emailResolution(after, [...users, { name: 'dave', email: 'dave@example.net' }]), emailResolution(after, users), 'one of another domain is not')
})
