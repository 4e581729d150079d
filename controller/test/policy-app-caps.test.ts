import t from 'tap'
import { capabilitiesOf, filterAllows, type FilterRule } from '@warren/protocol'
import { check, createPolicyEngine, parsePolicy, type Policy, type PolicyNode } from '../src/policy/index.js'

// Tailscale's grants with `app`: capabilities that a destination node learns for each of
// its callers, and no network access of their own.

const users = [{ name: 'alice', email: 'alice@example.com' }, { name: 'bob', email: 'bob@example.org' }]
const HEAD = '"groups": { "group:eng": ["alice@"] }, "tagOwners": { "tag:web": ["alice@"], "tag:db": ["alice@"] }'

function parse (grants: string): ReturnType<typeof parsePolicy> {
  return parsePolicy(`{ ${HEAD}, "grants": ${grants} }`, { users })
}

function policy (grants: string): Policy {
  const r = parse(grants)
  if (r.policy === undefined) throw new Error(r.errors.map(e => e.message).join('\n'))
  return r.policy
}

function errors (grants: string): string[] {
  return parse(grants).errors.map(e => e.message.replace(/^\d+:\d+: /, ''))
}

const web: PolicyNode = { id: 'web', name: 'web', tags: ['tag:web'], ipv4: '100.64.0.1', ipv6: 'fd7a:115c:a1e0::1' }
const db: PolicyNode = { id: 'db', name: 'db', tags: ['tag:db'], ipv4: '100.64.0.2', ipv6: 'fd7a:115c:a1e0::2' }
const laptop: PolicyNode = { id: 'laptop', name: 'laptop', user: 'alice', tags: [], ipv4: '100.64.0.3', ipv6: 'fd7a:115c:a1e0::3' }
const phone: PolicyNode = { id: 'phone', name: 'phone', user: 'bob', tags: [], ipv4: '100.64.0.4', ipv6: 'fd7a:115c:a1e0::4' }
const NODES = [web, db, laptop, phone]

function filters (p: Policy): (id: string) => FilterRule[] {
  const engine = createPolicyEngine(p, users)
  engine.setNodes(NODES)
  return id => engine.filterFor(id)
}

/** capsOn is what `from` holds on `to`, by `to`'s compiled filter, as its whois would say. */
function capsOn (p: Policy, from: PolicyNode, to: PolicyNode, family: 4 | 6 = 4): Record<string, unknown[]> {
  return capabilitiesOf(filters(p)(to.id), family === 4 ? from.ipv4 : from.ipv6)
}

t.test('capability names and values are checked as Tailscale checks them, with what to write', async t => {
  t.same(errors('[{ "src": ["*"], "dst": ["*"], "app": { "https://example.com/cap/web": [{}] } }]'),
    ['capability "https://example.com/cap/web" in grant 1 (grants[0]): capability name must have the form {domain}/{path}, without a scheme (write a name such as "example.com/cap/web")'])
  t.same(errors('[{ "src": ["*"], "dst": ["*"], "app": { "web-admin": [{}] } }]'),
    ['capability "web-admin" in grant 1 (grants[0]): capability name must have the form {domain}/{path}, without a scheme (write a name such as "example.com/cap/web")'])
  t.match(errors('[{ "src": ["*"], "dst": ["*"], "app": { "tailscale.com/cap/funnel": [{}] } }]'),
    [/^capability "tailscale.com\/cap\/funnel" in grant 1 \(grants\[0\]\): capability name must not be in the tailscale.com domain \(use your own domain; of tailscale.com only .*tailscale.com\/cap\/drive/])
  t.same(errors('[{ "src": ["*"], "dst": ["*"], "app": { "tailscale.com/cap/drive": [{ "shares": ["*"], "access": "rw" }] } }]'), [],
    'the tailscale.com capabilities Tailscale offers may be granted')
  t.same(errors('[{ "src": ["*"], "dst": ["*"], "app": { "example.com/cap/web": { "role": "admin" } } }]'),
    ['capability "example.com/cap/web" in grant 1 (grants[0]) must be a list of JSON objects (write "example.com/cap/web": [{}] to grant it without values)'])
  t.same(errors('[{ "src": ["*"], "dst": ["*"], "app": { "example.com/cap/web": ["admin"] } }]'),
    ['each value of capability "example.com/cap/web" in grant 1 (grants[0]) must be a JSON object ({...}) (wrap the value in an object, such as {"role": "admin"})'])
  t.same(errors('[{ "src": ["*"], "dst": ["*"], "app": { "example.com/cap/web": [{}], "example.com/cap/web": [{}] } }]'),
    ['capability "example.com/cap/web" is given twice in grant 1 (grants[0]); merge its values into one list'])
  t.same(errors('[{ "src": ["*"], "dst": ["*"], "app": {} }]'),
    ['grant 1 (grants[0]) grants nothing: "ip" and "app" are both missing or empty (add "ip": ["*"] for all traffic, ports such as "ip": ["tcp:443"], or capabilities such as "app": {"example.com/cap/web": [{}]})'])
  t.same(errors('[{ "src": ["*"], "dst": ["*"], "app": [] }]'),
    ['"app" in grant 1 (grants[0]) must be an object of capabilities: {"example.com/cap/web": [{"role": "admin"}]}'])
  t.same(errors('[{ "src": ["*"], "dst": ["autogroup:self"], "app": { "example.com/cap/web": [{}] } }]').length, 1, 'autogroup:self takes users only, as for ip')
  t.same(errors('[{ "src": ["tag:nope"], "dst": ["*"], "app": { "bad": [1] } }]').length, 2, 'every error is reported at once')
  t.same(errors('[{ "src": ["*"], "dst": ["*"], "app": {}, "ip": ["tcp:22"] }]'), [], 'an empty app beside ip is fine')
})

t.test('a capability reaches the destination for each source, and gives no traffic', async t => {
  const p = policy('[{ "src": ["group:eng"], "dst": ["tag:web"], "app": { "example.com/cap/web": [{ "role": "admin" }] } }]')
  t.same(capsOn(p, laptop, web), { 'example.com/cap/web': [{ role: 'admin' }] }, 'alice\'s laptop is an admin on web')
  t.same(capsOn(p, laptop, web, 6), { 'example.com/cap/web': [{ role: 'admin' }] }, 'from its IPv6 address too')
  t.same(capsOn(p, phone, web), {}, 'bob is not in group:eng')
  t.same(capsOn(p, laptop, db), {}, 'db is not a destination')
  t.same(filters(p)('laptop'), [], 'the source learns nothing: it is not a destination')
  t.notOk(filterAllows(filters(p)('web'), { src: laptop.ipv4, proto: 6, dport: 443 }), 'a capability opens no port')
  t.notOk(check(p, 'alice@', 'tag:web', 6, 443, { users, nodes: NODES }).allowed, 'check sees no access either')
  const engine = createPolicyEngine(p, users)
  engine.setNodes(NODES)
  t.ok(engine.peersOf('web').has('laptop'), 'the two are peers, as in Tailscale, so whois can name the caller')
})

t.test('values of the same capability merge in grant order; an empty list still names it', async t => {
  const p = policy(`[
    { "src": ["*"], "dst": ["tag:web"], "app": { "example.com/cap/web": [{ "role": "viewer" }] } },
    { "src": ["alice@"], "dst": ["tag:web"], "app": { "example.com/cap/web": [{ "role": "admin" }], "example.com/cap/audit": [] } },
    { "src": ["alice@"], "dst": ["tag:web", "*"], "ip": ["tcp:443"], "app": { "example.com/cap/web": [{ "nested": { "n": [1, 2] } }] } }
  ]`)
  t.same(capsOn(p, laptop, web), {
    'example.com/cap/web': [{ role: 'viewer' }, { role: 'admin' }, { nested: { n: [1, 2] } }],
    'example.com/cap/audit': []
  }, 'a grant that reaches web through two destinations gives its values once')
  t.same(capsOn(p, phone, web), { 'example.com/cap/web': [{ role: 'viewer' }] })
  t.ok(filterAllows(filters(p)('web'), { src: laptop.ipv4, proto: 6, dport: 443 }), 'a grant with ip and app gives both')
  t.same(capsOn(p, laptop, db), { 'example.com/cap/web': [{ nested: { n: [1, 2] } }] })
})

t.test('Taildrive and peer relays give their companion capability the other way', async t => {
  const p = policy('[{ "src": ["group:eng"], "dst": ["tag:web"], "app": { "tailscale.com/cap/drive": [{ "shares": ["*"], "access": "ro" }] } }]')
  t.same(capsOn(p, laptop, web), { 'tailscale.com/cap/drive': [{ shares: ['*'], access: 'ro' }] })
  t.same(capsOn(p, web, laptop), { 'tailscale.com/cap/drive-sharer': [] }, 'web may share to the laptop')
  t.same(capsOn(p, web, phone), {})
})

t.test('autogroup:self gives a user\'s nodes the capability on each other only', async t => {
  const p = policy('[{ "src": ["autogroup:member"], "dst": ["autogroup:self"], "app": { "example.com/cap/self": [{}] } }]')
  t.same(capsOn(p, laptop, laptop), { 'example.com/cap/self': [{}] })
  t.same(capsOn(p, phone, laptop), {})
})

t.test('a change of values alone changes the destination\'s filter, and no other node\'s', async t => {
  const grant = (role: string): string => `[{ "src": ["group:eng"], "dst": ["tag:web"], "app": { "example.com/cap/web": [{ "role": "${role}" }] } }]`
  const engine = createPolicyEngine(policy(grant('viewer')), users)
  engine.setNodes(NODES)
  const changed = engine.setPolicy(policy(grant('admin')), users)
  t.same([...changed], ['web'])
  t.same(capabilitiesOf(engine.filterFor('web'), laptop.ipv4), { 'example.com/cap/web': [{ role: 'admin' }] })
})

t.test('values keep keys that name object machinery as plain data', async t => {
  const p = policy('[{ "src": ["*"], "dst": ["tag:web"], "app": { "example.com/cap/web": [{ "__proto__": { "admin": true } }] } }]')
  const values = capsOn(p, laptop, web)['example.com/cap/web']!
  t.equal(JSON.stringify(values), '[{"__proto__":{"admin":true}}]')
  t.equal(({} as Record<string, unknown>).admin, undefined)
})
