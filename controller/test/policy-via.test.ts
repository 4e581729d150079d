import t from 'tap'
import { forwardAllows } from '@warren/protocol'
import { createPolicyEngine, parsePolicy, type Policy, type PolicyNode } from '../src/policy/index.js'

/**
 * Grants with `via`: a grant's subnet destinations are forwarded only by the routers that
 * carry one of its `via` tags, and only those become peers of its sources for it.
 */
const users = [{ name: 'alice' }, { name: 'bob' }]
const subnet = ['10.44.0.0/16']
const alice: PolicyNode = { id: 'alice', name: 'alice', user: 'alice', tags: [], ipv4: '100.64.0.1', ipv6: 'fd7a:115c:a1e0::1' }
const bob: PolicyNode = { id: 'bob', name: 'bob', user: 'bob', tags: [], ipv4: '100.64.0.2', ipv6: 'fd7a:115c:a1e0::2' }
const routerA: PolicyNode = { id: 'ra', name: 'router-a', tags: ['tag:router-a'], ipv4: '100.64.0.3', ipv6: 'fd7a:115c:a1e0::3', advertisedRoutes: subnet, approvedRoutes: subnet }
const routerB: PolicyNode = { id: 'rb', name: 'router-b', tags: ['tag:router-b'], ipv4: '100.64.0.4', ipv6: 'fd7a:115c:a1e0::4', advertisedRoutes: subnet, approvedRoutes: subnet }

function policyText (grants: string): string {
  return `{ "tagOwners": { "tag:router-a": [], "tag:router-b": [] }, "hosts": { "lab": "10.44.7.0/24" }, "grants": [${grants}] }`
}

function policy (grants: string): Policy {
  const r = parsePolicy(policyText(grants), { users })
  if (r.policy === undefined) throw new Error(r.errors.map(e => e.message).join('\n'))
  return r.policy
}

const VIA = `{ "src": ["alice@"], "dst": ["10.44.0.0/16"], "ip": ["tcp:22"], "via": ["tag:router-a"] },
  { "src": ["bob@"], "dst": ["lab"], "ip": ["*"], "via": ["tag:router-b"] }`

t.test('two routers serve one subnet: each forwards only the grants that name its tag', async t => {
  const engine = createPolicyEngine(policy(VIA), users)
  engine.setNodes([alice, bob, routerA, routerB])
  const pass = (router: string, src: string, dst: string, dport: number): boolean => forwardAllows(engine.filterFor(router), { src, dst, dport, proto: 6 })
  t.ok(pass('ra', '100.64.0.1', '10.44.1.1', 22), 'router-a forwards alice to the subnet on 22')
  t.notOk(pass('rb', '100.64.0.1', '10.44.1.1', 22), 'router-b does not')
  t.ok(pass('rb', '100.64.0.2', '10.44.7.9', 80), 'router-b forwards bob to the lab')
  t.notOk(pass('ra', '100.64.0.2', '10.44.7.9', 80), 'router-a does not')
  t.same([...engine.peersOf('alice')], ['ra'], 'alice gets router-a as her peer, not router-b')
  t.same([...engine.peersOf('bob')], ['rb'], 'bob gets router-b')
})

t.test('a router that gains the via tag starts forwarding', async t => {
  const engine = createPolicyEngine(policy(VIA), users)
  engine.setNodes([alice, bob, routerA, routerB])
  const change = engine.upsertNode({ ...routerB, tags: ['tag:router-a', 'tag:router-b'] })
  t.ok(change.filterChanged.has('rb'), 'its filter changes')
  t.ok(change.peersGained.has('alice'), 'alice becomes its peer')
  t.ok(forwardAllows(engine.filterFor('rb'), { src: '100.64.0.1', dst: '10.44.1.1', dport: 22, proto: 6 }), 'and it forwards her')
})

t.test('bad via is refused with a clear error', async t => {
  const errors = (grants: string): string[] => parsePolicy(policyText(grants), { users }).errors.map(e => e.message)
  t.match(errors('{ "src": ["*"], "dst": ["10.44.0.0/16"], "ip": ["*"], "via": ["autogroup:tagged"] }'), [/via can only be a tag/])
  t.match(errors('{ "src": ["*"], "dst": ["10.44.0.0/16"], "ip": ["*"], "via": ["tag:nope"] }'), [/tag:nope has no entry in "tagOwners"/])
  t.match(errors('{ "src": ["*"], "dst": ["10.44.0.0/16"], "ip": ["*"], "via": [] }'), [/names no routers/])
  t.match(errors('{ "src": ["*"], "dst": ["tag:router-a"], "ip": ["*"], "via": ["tag:router-b"] }'), [/"tag:router-a" is not an address range/])
})
