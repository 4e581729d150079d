import t from 'tap'
import fc from 'fast-check'
import { forwardAllows, filterAllows, parseIpPrefix, prefixContains } from '@warren/protocol'
import { autoApprovedRoutes, check, createPolicyEngine, parsePolicy, type Policy, type PolicyNode } from '../src/policy/index.js'

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

// Random policies and routers: the forward filter agrees with `check` on addresses, and
// incremental changes (routes approved, changed, withdrawn) equal a fresh compile.
const SUBNET_DSTS = ['*', '192.168.1.0/24', '192.168.0.0/16', '192.168.1.7', '10.1.0.0/16', 'lanhost', 'u0@', 'tag:r', 'group:g']
const ROUTES = ['192.168.1.0/24', '192.168.0.0/16', '10.0.0.0/8', '172.16.0.0/12']
const ADDRS = ['192.168.1.7', '192.168.1.9', '192.168.7.1', '10.1.2.3', '10.9.9.9', '172.16.0.1']
const routeRuleArb = fc.record({
  src: fc.uniqueArray(fc.constantFrom('*', 'u0@', 'u1@', 'group:g', 'tag:r', 'tag:s', '100.64.0.1'), { minLength: 1, maxLength: 2 }),
  dst: fc.uniqueArray(fc.tuple(fc.constantFrom(...SUBNET_DSTS), fc.constantFrom('*', '22', '443', '80,443')), { minLength: 1, maxLength: 2 }),
  proto: fc.constantFrom(undefined, 'tcp', 'udp')
})
const routePolicyArb = fc.array(routeRuleArb, { maxLength: 4 }).map(rules => JSON.stringify({
  groups: { 'group:g': ['u1@'] },
  tagOwners: { 'tag:r': [], 'tag:s': [] },
  hosts: { lanhost: '192.168.1.7' },
  acls: rules.map(r => ({ action: 'accept', src: r.src, dst: r.dst.map(([d, p]) => `${d}:${p}`), ...(r.proto !== undefined ? { proto: r.proto } : {}) }))
}))
const routeNodeArb = fc.record({
  owner: fc.constantFrom('u0', 'u1', 'tag:r', 'tag:s'),
  advertised: fc.subarray(ROUTES),
  approvedAll: fc.boolean()
})
function routeNode (i: number, n: { owner: string, advertised: string[], approvedAll: boolean }): PolicyNode {
  const tagged = n.owner.startsWith('tag:')
  return {
    id: `n${i}`, name: `node${i}`, tags: tagged ? [n.owner] : [], ...(tagged ? {} : { user: n.owner }),
    ipv4: `100.64.0.${i + 1}`, ipv6: `fd7a:115c:a1e0::${i + 1}`,
    advertisedRoutes: n.advertised, approvedRoutes: n.approvedAll ? n.advertised : n.advertised.slice(1)
  }
}

t.test('a router\'s forward filter agrees with check on the addresses it serves', async t => {
  fc.assert(fc.property(routePolicyArb, fc.array(routeNodeArb, { minLength: 1, maxLength: 4 }), fc.nat(), (text, specs, s) => {
    const p = policy(text)
    const nodes = specs.map((n, i) => routeNode(i, n))
    const engine = createPolicyEngine(p, users)
    engine.setNodes(nodes)
    for (const router of nodes) {
      const served = (router.advertisedRoutes ?? []).filter(r => router.approvedRoutes?.includes(r))
      const src = nodes[s % nodes.length]!
      for (const addr of ADDRS) {
        for (const [proto, port] of [[6, 443], [6, 22], [17, 80]] as const) {
          const inRoute = served.some(r => checkInRoute(r, addr))
          const want = inRoute && check(p, { user: src.user, tags: src.tags, ips: [src.ipv4] }, { ips: [addr] }, proto, port, { users }).allowed
          const got = forwardAllows(engine.filterFor(router.id), { src: src.ipv4, dst: addr, proto, dport: port })
          if (got !== want) throw new Error(`${src.name} -> ${addr} ${proto}/${port} via ${router.name} (${served.join(',')}): filter ${got}, check ${want}\n${text}`)
        }
      }
    }
  }), { numRuns: 200 })
  t.pass('200 random policies and routers agree')
})

t.test('incremental route changes equal a fresh compile', async t => {
  const opArb = fc.record({ remove: fc.boolean(), i: fc.nat({ max: 4 }), node: routeNodeArb })
  fc.assert(fc.property(routePolicyArb, fc.array(opArb, { minLength: 1, maxLength: 10 }), (text, ops) => {
    const p = policy(text)
    const engine = createPolicyEngine(p, users)
    const current = new Map<string, PolicyNode>()
    const state = (e: ReturnType<typeof createPolicyEngine>, id: string): string => JSON.stringify([[...e.peersOf(id)].sort(), e.filterFor(id)])
    for (const op of ops) {
      const id = `n${op.i}`
      const before = new Map([...current.keys()].map(x => [x, state(engine, x)]))
      let change: Set<string>
      if (op.remove) { current.delete(id); change = engine.removeNode(id) } else { current.set(id, routeNode(op.i, op.node)); change = engine.upsertNode(current.get(id)!) }
      const fresh = createPolicyEngine(p, users)
      fresh.setNodes([...current.values()])
      for (const x of current.keys()) {
        const got = state(engine, x)
        if (got !== state(fresh, x)) throw new Error(`${x} after ${op.remove ? 'remove' : 'upsert'} ${id}: incremental ${got} != fresh ${state(fresh, x)}\n${text}`)
        if (got !== (before.get(x) ?? JSON.stringify([[], []])) && !change.has(x)) throw new Error(`${x} changed but was not reported`)
      }
    }
  }), { numRuns: 200 })
  t.pass('200 random change sequences agree')
})

function checkInRoute (route: string, addr: string): boolean {
  const r = parseIpPrefix(route)
  const a = parseIpPrefix(addr)
  return r !== undefined && a !== undefined && prefixContains(r, a)
}
