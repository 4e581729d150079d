import t from 'tap'
import { diff, explain, parsePolicy, type CapChange, type Policy, type PolicyNode } from '../src/policy/index.js'

// `policy diff` and `policy explain` for grants with `app`: which capabilities a source
// gains, loses or holds with other values at a destination, and which grant gives each.

const users = [{ name: 'alice', email: 'alice@example.com' }, { name: 'bob', email: 'bob@example.org' }]
const HEAD = '"groups": { "group:eng": ["alice@"] }, "tagOwners": { "tag:web": ["alice@"], "tag:db": ["alice@"] }'

function policy (grants: string): Policy {
  const r = parsePolicy(`{ ${HEAD},\n"grants": ${grants} }`, { users })
  if (r.policy === undefined) throw new Error(r.errors.map(e => e.message).join('\n'))
  return r.policy
}

const web: PolicyNode = { id: 'web', name: 'web', tags: ['tag:web'], ipv4: '100.64.0.1', ipv6: 'fd7a:115c:a1e0::1' }
const db: PolicyNode = { id: 'db', name: 'db', tags: ['tag:db'], ipv4: '100.64.0.2', ipv6: 'fd7a:115c:a1e0::2' }
const laptop: PolicyNode = { id: 'laptop', name: 'laptop', user: 'alice', tags: [], ipv4: '100.64.0.3', ipv6: 'fd7a:115c:a1e0::3' }
const phone: PolicyNode = { id: 'phone', name: 'phone', user: 'bob', tags: [], ipv4: '100.64.0.4', ipv6: 'fd7a:115c:a1e0::4' }
const NODES = [web, db, laptop, phone]

const TRAFFIC = '{ "src": ["*"], "dst": ["*"], "ip": ["*"] }'
const OLD = policy(`[${TRAFFIC},
  { "src": ["group:eng"], "dst": ["tag:web"], "app": { "example.com/cap/web": [{ "role": "user" }] } },
  { "src": ["tag:web"], "dst": ["tag:db"], "app": { "example.com/cap/db": [{}] } }]`)
const NEW = policy(`[${TRAFFIC},
  { "src": ["group:eng"], "dst": ["tag:web"], "app": { "example.com/cap/web": [{ "role": "admin" }] } },
  { "src": ["autogroup:member"], "dst": ["tag:db"], "app": { "example.com/cap/metrics": [{ "read": true }] } }]`)

function view (changes: CapChange[], kind: CapChange['kind']): Array<Omit<CapChange, 'kind'>> {
  return changes.filter(c => c.kind === kind).map(({ kind: _, ...rest }) => rest)
}

t.test('diff lists each capability gained, lost or changed with its values, between identities', async t => {
  const d = diff(OLD, NEW, [], users)
  t.same(d.gained, [], 'traffic is the same: no traffic rows')
  t.same(d.lost, [])
  t.same(view(d.caps, 'identity'), [
    { src: '(other users)', dst: 'tag:db', cap: 'example.com/cap/metrics', change: 'gained', after: [{ read: true }] },
    { src: 'alice@', dst: 'tag:db', cap: 'example.com/cap/metrics', change: 'gained', after: [{ read: true }] },
    { src: 'alice@', dst: 'tag:web', cap: 'example.com/cap/web', change: 'changed', before: [{ role: 'user' }], after: [{ role: 'admin' }] },
    { src: 'tag:web', dst: 'tag:db', cap: 'example.com/cap/db', change: 'lost', before: [{}] }
  ])
})

t.test('diff lists capability changes between the current nodes, by node name', async t => {
  const d = diff(OLD, NEW, NODES, users)
  t.same(view(d.caps, 'node'), [
    { src: 'laptop', dst: 'db', cap: 'example.com/cap/metrics', change: 'gained', after: [{ read: true }] },
    { src: 'laptop', dst: 'web', cap: 'example.com/cap/web', change: 'changed', before: [{ role: 'user' }], after: [{ role: 'admin' }] },
    { src: 'phone', dst: 'db', cap: 'example.com/cap/metrics', change: 'gained', after: [{ read: true }] },
    { src: 'web', dst: 'db', cap: 'example.com/cap/db', change: 'lost', before: [{}] }
  ], 'each capability once per node, though a node is a source by its IPv4 and IPv6 address')
})

t.test('diff sees the merged values: a second grant of a capability changes its list', async t => {
  const one = policy(`[{ "src": ["alice@"], "dst": ["tag:web"], "app": { "example.com/cap/web": [{ "a": 1 }] } }]`)
  const two = policy(`[{ "src": ["alice@"], "dst": ["tag:web"], "app": { "example.com/cap/web": [{ "a": 1 }] } },
    { "src": ["group:eng"], "dst": ["tag:web"], "app": { "example.com/cap/web": [{ "b": 2 }] } }]`)
  t.same(view(diff(one, two, [web, laptop], users).caps, 'node'), [
    { src: 'laptop', dst: 'web', cap: 'example.com/cap/web', change: 'changed', before: [{ a: 1 }], after: [{ a: 1 }, { b: 2 }] }
  ])
  t.same(diff(two, two, NODES, users).caps, [], 'the same policy changes no capability')
})

t.test('diff shows the companion capability a Taildrive grant gives the other way', async t => {
  const drive = policy(`[${TRAFFIC}, { "src": ["alice@"], "dst": ["tag:web"], "app": { "tailscale.com/cap/drive": [{ "shares": ["*"], "access": "ro" }] } }]`)
  const rows = view(diff(policy(`[${TRAFFIC}]`), drive, [web, laptop], users).caps, 'node')
  t.same(rows, [
    { src: 'laptop', dst: 'web', cap: 'tailscale.com/cap/drive', change: 'gained', after: [{ shares: ['*'], access: 'ro' }] },
    { src: 'web', dst: 'laptop', cap: 'tailscale.com/cap/drive-sharer', change: 'gained', after: [] }
  ])
})

t.test('explain names each capability the source gets at the destination and the grant that gives it', async t => {
  const p = policy(`[
  { "src": ["group:eng"], "dst": ["tag:web"], "ip": ["tcp:443"] },
  { "src": ["alice@"], "dst": ["tag:web"], "app": { "example.com/cap/web": [{ "role": "admin" }], "example.com/cap/logs": [{}] } },
  { "src": ["autogroup:member"], "dst": ["tag:web"], "app": { "example.com/cap/web": [{ "role": "user" }] } }]`)
  const r = explain(p, 'alice@', 'tag:web', 443, 'tcp', { users })
  t.equal(r.allowed, true)
  t.same(r.caps.map(c => [c.cap, c.values, c.index + 1, c.line]), [
    ['example.com/cap/web', [{ role: 'admin' }], 2, 4],
    ['example.com/cap/logs', [{}], 2, 4],
    ['example.com/cap/web', [{ role: 'user' }], 3, 5]
  ], 'in grant order, each with its grant and line')
  t.match(r.message, /is allowed by:\n {2}rule 1 \(line 3\):.*\nalice@ gets these capabilities at tag:web:\n {2}example\.com\/cap\/web \[\{"role":"admin"\}\] from rule 2 \(line 4\): /)

  const bob = explain(p, 'bob@', 'tag:web', 22, 'tcp', { users })
  t.equal(bob.allowed, false, 'a capability is no traffic')
  t.same(bob.caps.map(c => [c.cap, c.values]), [['example.com/cap/web', [{ role: 'user' }]]])
  t.match(bob.message, /^nothing allows bob@ to reach tag:web:22\/tcp\nbob@ gets these capabilities at tag:web:\n {2}example\.com\/cap\/web \[\{"role":"user"\}\] from rule 3 \(line 5\)/)

  const none = explain(p, 'tag:web', 'alice@', 443, 'tcp', { users })
  t.same(none.caps, [])
  t.equal(none.message, 'nothing allows tag:web to reach alice@:443/tcp', 'no capability section when there are none')
})

t.test('explain works on node names, through the nodes\' identities', async t => {
  const p = policy('[{ "src": ["alice@"], "dst": ["tag:web"], "app": { "example.com/cap/web": [{}] } }]')
  t.same(explain(p, 'laptop', 'web', 80, 'tcp', { users, nodes: NODES }).caps.map(c => c.cap), ['example.com/cap/web'])
  t.same(explain(p, 'phone', 'web', 80, 'tcp', { users, nodes: NODES }).caps, [])
})
