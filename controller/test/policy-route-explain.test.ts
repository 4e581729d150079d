import t from 'tap'
import { diff, explain, parsePolicy, type Policy, type PolicyNode } from '../src/policy/index.js'

/**
 * explain and diff with subnet routers: a destination behind routers names the routers
 * that forward the flow (with `via`, only those with its tags); diff shows a router's
 * forward rules as access to the range behind it, not to the router.
 */
const users = [{ name: 'alice' }, { name: 'bob' }]
const subnet = ['10.44.0.0/16']
const alice: PolicyNode = { id: 'alice', name: 'alice-laptop', user: 'alice', tags: [], ipv4: '100.64.0.1', ipv6: 'fd7a:115c:a1e0::1' }
const routerA: PolicyNode = { id: 'ra', name: 'router-a', tags: ['tag:router-a'], ipv4: '100.64.0.3', ipv6: 'fd7a:115c:a1e0::3', advertisedRoutes: subnet, approvedRoutes: subnet }
const routerB: PolicyNode = { id: 'rb', name: 'router-b', tags: ['tag:router-b'], ipv4: '100.64.0.4', ipv6: 'fd7a:115c:a1e0::4', advertisedRoutes: subnet, approvedRoutes: subnet }
const nodes = [alice, routerA, routerB]

function policy (grants: string): Policy {
  const r = parsePolicy(`{ "tagOwners": { "tag:router-a": [], "tag:router-b": [] }, "grants": [${grants}] }`, { users })
  if (r.policy === undefined) throw new Error(r.errors.map(e => e.message).join('\n'))
  return r.policy
}

const PLAIN = '{ "src": ["alice@"], "dst": ["10.44.0.0/16"], "ip": ["tcp:22"] }'
const VIA = '{ "src": ["alice@"], "dst": ["10.44.0.0/16"], "ip": ["tcp:22"], "via": ["tag:router-a"] }'

t.test('explain names the routers a flow into a subnet goes through', async t => {
  const both = explain(policy(PLAIN), 'alice@', '10.44.1.1', 22, 'tcp', { users, nodes })
  t.ok(both.allowed)
  t.match(both.message, /through subnet router router-a \(10\.44\.0\.0\/16\), router-b \(10\.44\.0\.0\/16\)$/, 'either router serves it')
  const via = explain(policy(VIA), 'alice@', '10.44.1.1', 22, 'tcp', { users, nodes })
  t.match(via.message, /through subnet router router-a \(10\.44\.0\.0\/16\); not through router-b \(10\.44\.0\.0\/16\) \(not named by the rule's via\)$/)
  const onlyB = explain(policy(VIA), 'alice@', '10.44.1.1', 22, 'tcp', { users, nodes: [alice, routerB] })
  t.match(onlyB.message, /10\.44\.1\.1 is behind router-b \(10\.44\.0\.0\/16\), and none forwards this flow$/, 'a via router missing is said')
  const nowhere = explain(policy('{ "src": ["alice@"], "dst": ["10.99.0.0/16"], "ip": ["tcp:22"] }'), 'alice@', '10.99.0.1', 22, 'tcp', { users, nodes })
  t.match(nowhere.message, /no node serves a route to 10\.99\.0\.1, so nothing carries the flow there$/)
  t.notMatch(explain(policy('{ "src": ["alice@"], "dst": ["tag:router-a"], "ip": ["tcp:22"] }'), 'alice@', 'router-a', 22, 'tcp', { users, nodes }).message,
    /subnet router|serves a route/, 'a node as destination gets no route note')
})

t.test('diff shows forwarding to the range behind a router, not access to the router', async t => {
  const d = diff(policy(PLAIN), policy(VIA), nodes, users)
  t.same(d.lost.filter(a => a.kind === 'node'), [{ kind: 'node', src: 'alice-laptop', dst: '10.44.0.0/16 via router-b', proto: 'tcp', ports: '22' }],
    'router-b stops forwarding alice into the subnet')
  t.same(d.gained, [], 'nothing is gained')
})
