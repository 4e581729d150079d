import t from 'tap'
import type { LocalStatus } from '@warren/protocol'
import { routeOptions } from '../src/commands/local-up.js'
import { formatRoutes } from '../src/commands/local-status.js'

/** Exit nodes at the command line: `warren up`'s exit-node options, and what `warren status` says of exit nodes. */
t.test('warren up reads the exit-node options', async t => {
  t.same(routeOptions({ advertiseExitNode: true }), { advertiseExitNode: true }, '--advertise-exit-node')
  t.same(routeOptions({ advertiseExitNode: false }), { advertiseExitNode: false }, '--no-advertise-exit-node stops offering it')
  t.same(routeOptions({ exitNode: ' office ', exitNodeAllowLanAccess: true }), { exitNode: 'office', exitNodeAllowLanAccess: true })
  t.same(routeOptions({ exitNode: '' }), { exitNode: '' }, '--exit-node= stops using one')
  t.throws(() => routeOptions({ exitNode: '', exitNodeAllowLanAccess: true }), { code: 'usage', message: /--exit-node-allow-lan-access needs an exit node/ })
})

t.test('warren status says which exit node is offered, available and in use', async t => {
  const exit = ['0.0.0.0/0', '::/0']
  const st = {
    self: { name: 'laptop', advertisedRoutes: [...exit, '10.0.0.0/8'], approvedRoutes: ['10.0.0.0/8'], primaryRoutes: ['10.0.0.0/8'] },
    routing: { advertiseRoutes: [...exit, '10.0.0.0/8'], acceptRoutes: false, snatSubnetRoutes: true, exitNode: 'office' },
    peers: [
      { name: 'office', online: true, routes: exit, routesInUse: exit },
      { name: 'cloud', online: true, routes: [...exit, '172.16.0.0/12'] }
    ]
  } as unknown as LocalStatus
  t.same(formatRoutes(st), [
    'offers exit node (awaiting approval: warren admin nodes approve-routes laptop 0.0.0.0/0 ::/0)',
    'exit node: office (in use)',
    'exit node available: cloud (use it with \'warren up --exit-node cloud\')',
    'routes advertised: 10.0.0.0/8 (approved, served, primary); masqueraded',
    'route 172.16.0.0/12 via cloud (standby): not used (run \'warren up --accept-routes\' to use it)'
  ], 'default routes are shown as exit nodes, not as subnet routes')
  const gone = { ...st, self: { ...st.self!, approvedRoutes: [...exit, '10.0.0.0/8'] }, peers: [] } as unknown as LocalStatus
  t.same(formatRoutes(gone).slice(0, 2), [
    'offers exit node (approved, in service)',
    'exit node: office (not available: no peer by that name offers an exit node; internet traffic goes out directly)'
  ])
})
