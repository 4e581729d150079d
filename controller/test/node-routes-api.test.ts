import t from 'tap'
import { testController, registration, call, setupUserKey } from './helpers.js'

/**
 * The node routes API: a node's advertised routes (as its map hello reports them), the
 * admin's approval (GET/POST /v1/nodes/:node/routes), bad input refused with the field
 * named and nothing changed, and autoApprovers approving at once.
 */
t.test('routes: listed, approved by an admin, bad ones refused, changes audited', async t => {
  const tc = await testController(t, { state: { autoApproveRoutes: n => (n.advertisedRoutes ?? []).filter(r => r.startsWith('10.')) } })
  const key = await setupUserKey(tc, { reusable: true })
  await call(tc.app, 'POST', '/v1/machine/register', registration(tc.state.controllerKey.publicKey, { authKey: key, hostname: 'router' }))
  const none = await call(tc.admin, 'GET', '/v1/nodes/router/routes')
  t.same(none.body.routes, { node: 'router', advertised: [], approved: [], served: [] }, 'a new node advertises nothing')

  const id = tc.state.getNode('router')!.id
  await tc.state.advertiseRoutes(id, ['10.5.0.0/16', '192.168.1.0/24'])
  const listed = await call(tc.admin, 'GET', '/v1/nodes/router/routes')
  t.same(listed.body.routes, { node: 'router', advertised: ['10.5.0.0/16', '192.168.1.0/24'], approved: ['10.5.0.0/16'], served: ['10.5.0.0/16'] },
    'the auto-approved route is served at once; the other waits')

  const approved = await call(tc.admin, 'POST', '/v1/nodes/router/routes', { routes: ['192.168.1.0/24', '10.5.0.0/16'] })
  t.equal(approved.status, 200)
  t.same(approved.body.routes.served, ['10.5.0.0/16', '192.168.1.0/24'], 'the admin approved the rest')
  t.same(tc.state.getNode('router')!.approvedRoutes, ['10.5.0.0/16', '192.168.1.0/24'], 'stored canonical and sorted')

  const auditBefore = tc.store.audit.length
  for (const [routes, pattern] of [
    [['192.168.1.1/24'], /host bits set: did you mean 192\.168\.1\.0\/24/],
    [['100.64.0.0/12'], /overlaps the mesh's own IPv4 range/],
    [['0.0.0.0/0'], /default route/],
    [['printer'], /not an IPv4 or IPv6 CIDR|no prefix length/]
  ] as const) {
    const r = await call(tc.admin, 'POST', '/v1/nodes/router/routes', { routes })
    t.equal(r.status, 400, `${routes[0]} is refused`)
    t.match(r.body.error.message, pattern, 'and the message says why')
  }
  t.equal(tc.store.audit.length, auditBefore, 'a refused request changed nothing')
  t.same(tc.state.getNode('router')!.approvedRoutes, ['10.5.0.0/16', '192.168.1.0/24'])
  t.equal((await call(tc.admin, 'GET', '/v1/nodes/nobody/routes')).status, 404, 'an unknown node is a 404')

  const cleared = await call(tc.admin, 'POST', '/v1/nodes/router/routes', { routes: [] })
  t.same(cleared.body.routes.served, [], 'an empty list approves none')
  t.match(tc.store.audit.at(-1), { action: 'node.routes.approve', target: 'router' }, 'each approval is in the audit log')
})
