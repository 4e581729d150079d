import t from 'tap'
import { forwardAllows, filterAllows } from '@warren/protocol'
import { autoApprovedRoutes, createPolicyEngine, parsePolicy, type Policy, type PolicyNode } from '../src/policy/index.js'

/**
 * Subnet routes in the policy: which peers a router gets, the forward filter compiled for
 * its served routes (a destination in the subnet allows exactly that), and autoApprovers.
 */
const users = [{ name: 'alice', email: 'alice@example.com' }, { name: 'bob' }]

function policy (text: string): Policy {
  const r = parsePolicy(text, { users })
  if (r.policy === undefined) throw new Error(r.errors.map(e => e.message).join('\n'))
  return r.policy
}

const alice: PolicyNode = { id: 'alice', name: 'alice-laptop', user: 'alice', tags: [], ipv4: '100.64.0.1', ipv6: 'fd7a:115c:a1e0::1' }
const bob: PolicyNode = { id: 'bob', name: 'bob-laptop', user: 'bob', tags: [], ipv4: '100.64.0.2', ipv6: 'fd7a:115c:a1e0::2' }
const router: PolicyNode = {
  id: 'router', name: 'router', tags: ['tag:router'], ipv4: '100.64.0.3', ipv6: 'fd7a:115c:a1e0::3',
  advertisedRoutes: ['192.168.1.0/24', '10.20.0.0/16'], approvedRoutes: ['192.168.1.0/24', '10.20.0.0/16']
}
const other: PolicyNode = { id: 'other', name: 'other', tags: ['tag:other'], ipv4: '100.64.0.4', ipv6: 'fd7a:115c:a1e0::4' }

const TEXT = `{
  "groups": { "group:eng": ["alice@"] },
  "tagOwners": { "tag:router": ["alice@"], "tag:other": [] },
  "hosts": { "printer": "192.168.1.7/32", "lab": "10.20.3.0/24" },
  "acls": [
    { "action": "accept", "src": ["group:eng"], "dst": ["192.168.1.0/24:443", "printer:631"], "proto": "tcp" },
    { "action": "accept", "src": ["bob@"], "dst": ["lab:*"] },
    { "action": "accept", "src": ["bob@"], "dst": ["172.16.0.0/12:*"] },
  ],
}`

t.test('a router gets the forward filter for its served routes, and the sources as peers', async t => {
  const engine = createPolicyEngine(policy(TEXT), users)
  engine.setNodes([alice, bob, router, other])
  const filter = engine.filterFor('router')
  t.same(filter.filter(r => r.dsts === undefined), [], 'nothing may reach the router itself')
  const pass = (src: string, dst: string, dport: number, proto = 6): boolean => forwardAllows(filter, { src, dst, dport, proto })
  t.ok(pass('100.64.0.1', '192.168.1.20', 443), 'alice -> subnet:443')
  t.notOk(pass('100.64.0.1', '192.168.1.20', 80), 'alice -> subnet:80 is denied')
  t.ok(pass('100.64.0.1', '192.168.1.7', 631), 'alice -> printer:631 (a host alias in the subnet)')
  t.notOk(pass('100.64.0.1', '192.168.1.8', 631), 'alice -> another host:631 is denied')
  t.notOk(pass('100.64.0.2', '192.168.1.20', 443), 'bob -> subnet:443 is denied')
  t.ok(pass('100.64.0.2', '10.20.3.9', 22), 'bob -> lab (inside 10.20.0.0/16) on any port')
  t.notOk(pass('100.64.0.2', '10.20.4.9', 22), 'bob -> outside the lab alias is denied')
  t.notOk(filter.some(r => r.dsts?.some(d => d.startsWith('172.'))), 'a destination outside the served routes gives the router nothing')
  t.same([...engine.peersOf('router')].sort(), ['alice', 'bob'], 'the sources that reach into the routes are the router\'s peers')
  t.ok(engine.peersOf('alice').has('router'), 'and the router is theirs')
  t.notOk(engine.peersOf('other').has('router'), 'others are not')
  t.notOk(filterAllows(filter, { src: '100.64.0.1', proto: 6, dport: 443 }), 'forward rules allow nothing inbound')
})

t.test('routes count only once approved; a change of approval changes filter and peers', async t => {
  const engine = createPolicyEngine(policy(TEXT), users)
  const pending = { ...router, approvedRoutes: [] }
  engine.setNodes([alice, bob, pending, other])
  t.same(engine.filterFor('router'), [], 'unapproved routes: no forward filter')
  t.notOk(engine.peersOf('alice').has('router'), 'and no peer for them')
  const change = engine.upsertNode({ ...router, approvedRoutes: ['192.168.1.0/24'] })
  t.ok(change.filterChanged.has('router'), 'approval changes the router\'s filter')
  t.ok(change.peersGained.has('alice'), 'alice gains the router as a peer')
  t.notOk(change.peersGained.has('bob'), 'bob does not (his rules reach only 10.20.0.0/16, not approved)')
  t.ok(forwardAllows(engine.filterFor('router'), { src: '100.64.0.1', dst: '192.168.1.1', proto: 6, dport: 443 }), 'the approved route is forwarded into')
  const joined: PolicyNode = { id: 'alice2', name: 'alice-phone', user: 'alice', tags: [], ipv4: '100.64.0.9', ipv6: 'fd7a:115c:a1e0::9' }
  const added = engine.upsertNode(joined)
  t.ok(added.filterChanged.has('router'), 'a new node of the source group changes the router\'s forward filter')
  t.ok(forwardAllows(engine.filterFor('router'), { src: '100.64.0.9', dst: '192.168.1.1', proto: 6, dport: 443 }), 'and is allowed through')
})

t.test('the default policy (* -> *:*) lets every node through every served route', async t => {
  const engine = createPolicyEngine(policy('{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]}'), users)
  engine.setNodes([alice, router])
  t.ok(forwardAllows(engine.filterFor('router'), { src: '100.64.0.1', dst: '10.20.99.1', proto: 17, dport: 53 }), 'alice -> 10.20.99.1:53/udp')
  t.ok(filterAllows(engine.filterFor('router'), { src: '100.64.0.1', proto: 6, dport: 22 }), 'and the router itself, as before')
})

t.test('autoApprovers: parsed, checked, and a CIDR approves itself and narrower routes', async t => {
  const text = `{
    "groups": { "group:net": ["bob@"] },
    "tagOwners": { "tag:router": ["alice@"] },
    "autoApprovers": { "routes": { "10.0.0.0/8": ["tag:router"], "192.168.1.0/24": ["group:net", "alice@"] }, "exitNode": ["tag:router"] },
    "acls": [],
  }`
  const p = policy(text)
  t.same(p.autoApprovers?.exitNode, ['tag:router'], 'exitNode approvers are kept')
  const r = { ...router, advertisedRoutes: ['10.20.0.0/16', '192.168.1.0/24', '192.168.0.0/16'], approvedRoutes: [] }
  t.same(autoApprovedRoutes(p, r, users), ['10.20.0.0/16'], 'tag:router: the /8 approves the narrower /16, not other ranges')
  const bobs = { ...bob, advertisedRoutes: ['192.168.1.0/25', '192.168.0.0/16'] }
  t.same(autoApprovedRoutes(p, bobs, users), ['192.168.1.0/25'], 'bob through group:net: a narrower route yes, a wider one no')
  t.same(autoApprovedRoutes(p, { ...alice, advertisedRoutes: ['192.168.1.0/24'] }, users), ['192.168.1.0/24'], 'alice by name')
  t.same(autoApprovedRoutes(p, { ...other, advertisedRoutes: ['10.1.0.0/16'] }, users), [], 'a tag that is not named: nothing')

  const bad = parsePolicy(`{
    "autoApprovers": { "routes": { "10.0.0.1": ["tag:nope"], "10.0.0.0/8": ["group:none", "autogroup:tagged"] }, "exitnodes": [] },
  }`, { users })
  const messages = bad.errors.map(e => `${e.line}: ${e.message}`)
  t.match(messages.join('\n'), /must be a CIDR/, 'a route key without a length is refused')
  t.match(messages.join('\n'), /tag tag:nope has no tagOwners entry/, 'an unknown tag is refused')
  t.match(messages.join('\n'), /group group:none is not defined/, 'an unknown group is refused')
  t.match(messages.join('\n'), /autogroup:tagged cannot approve routes/, 'autogroup:tagged is refused')
  t.match(messages.join('\n'), /unknown key "exitnodes" in autoApprovers.*exitNode/, 'a misspelt key gets a suggestion')
})
