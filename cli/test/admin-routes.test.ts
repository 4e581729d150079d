import t from 'tap'
import { join } from 'node:path'
import { startController } from '@warren/controller'
import type { LocalStatus, NodeRoutes } from '@warren/protocol'
import { runWarren, tempDir, joinNode, ok, failsWith, json, type CliResult } from './cli-harness.js'
import { routeOptions } from '../src/commands/local-up.js'
import { formatRoutes } from '../src/commands/local-status.js'
import { describeRoutes } from '../src/commands/admin-routes.js'

/**
 * Subnet routes at the command line: `warren admin nodes routes|approve-routes` against a
 * controller started here, `warren up`'s route options checked before the daemon is
 * asked, and what `warren status` says of routes.
 */
t.test('warren admin nodes routes and approve-routes', async t => {
  const dir = tempDir(t, 'warren-routes-cli-')
  const ctl = await startController({ stateDir: join(dir, 'state'), listen: '127.0.0.1:0', logger: false, rateLimit: false })
  t.teardown(async () => { await ctl.close() })
  const admin = async (...args: string[]): Promise<CliResult> => await runWarren(['admin', '--state-dir', join(dir, 'state'), ...args])
  ok(t, await admin('users', 'create', 'alice'), 'users create alice')
  await joinNode(ctl, json<{ key: string }>(await admin('keys', 'create', '--user', 'alice', '--preapproved', '--json')).key, 'router')

  t.match(ok(t, await admin('nodes', 'routes', 'router'), 'routes'), /router advertises no routes/, 'a node without routes says how to advertise some')
  const approved = json<NodeRoutes>(await admin('nodes', 'approve-routes', 'router', '192.168.1.0/24,10.0.0.0/8', '--json'))
  t.same(approved.approved, ['10.0.0.0/8', '192.168.1.0/24'], 'comma- and space-separated CIDRs are approved, sorted')
  t.match(ok(t, await admin('nodes', 'routes', 'router'), 'routes'), /192\.168\.1\.0\/24\s+approved, not advertised/, 'approved before advertised is shown as such')
  failsWith(t, await admin('nodes', 'approve-routes', 'router', '192.168.1.5/24'), /host bits set: did you mean 192\.168\.1\.0\/24\?/, 'host bits')
  failsWith(t, await admin('nodes', 'approve-routes', 'router', '100.100.0.0/16'), /overlaps the mesh's own IPv4 range/, 'the mesh range')
  t.same(json<NodeRoutes>(await admin('nodes', 'routes', 'router', '--json')).approved, ['10.0.0.0/8', '192.168.1.0/24'], 'a refused command changed nothing')
  failsWith(t, await admin('nodes', 'routes', 'nobody'), /no node with id or name 'nobody'/, 'an unknown node')
})

t.test('warren up checks its route options before asking the daemon', async t => {
  t.same(routeOptions({}), {}, 'no options: the daemon keeps what the last up said')
  t.same(routeOptions({ advertiseRoutes: '192.168.1.0/24, fd00:1::/64 ,192.168.1.0/24', acceptRoutes: true, snatSubnetRoutes: 'false' }),
    { advertiseRoutes: ['192.168.1.0/24', 'fd00:1::/64'], acceptRoutes: true, snatSubnetRoutes: false }, 'normalized, repeats dropped')
  t.same(routeOptions({ advertiseRoutes: '' }), { advertiseRoutes: [] }, 'an empty list stops advertising')
  t.throws(() => routeOptions({ advertiseRoutes: '10.0.0.1/8' }), /host bits set: did you mean 10\.0\.0\.0\/8/)
  t.throws(() => routeOptions({ advertiseRoutes: '10.0.0.1' }), /has no prefix length: write a subnet such as 10\.0\.0\.1\/32/)
  t.throws(() => routeOptions({ advertiseRoutes: '0.0.0.0/0' }), /default route/)
  t.throws(() => routeOptions({ snatSubnetRoutes: 'no' }), /--snat-subnet-routes takes true or false, not "no"/)
  const r = await runWarren(['up', '--socket', '/nonexistent/warren.sock', '--controller', 'https://127.0.0.1:1', '--advertise-routes', '127.0.0.0/8'])
  failsWith(t, r, /overlaps loopback/, 'the CLI refuses before it reaches any daemon')
})

t.test('warren admin nodes routes says whether a served route has the node as its primary router', async t => {
  const r = { node: 'office', advertised: ['10.0.0.0/8', '172.16.0.0/12'], approved: ['10.0.0.0/8', '172.16.0.0/12'], served: ['10.0.0.0/8', '172.16.0.0/12'], primary: ['10.0.0.0/8'] }
  t.match(describeRoutes(r), /10\.0\.0\.0\/8\s+served, primary\n/)
  t.match(describeRoutes(r), /172\.16\.0\.0\/12\s+served, not primary \(another router carries it, or this one is offline\)/)
})

t.test('warren status says which routes are offered, approved and in use', async t => {
  const st = {
    self: { advertisedRoutes: ['192.168.1.0/24', '10.0.0.0/8', '10.9.0.0/16'], approvedRoutes: ['192.168.1.0/24', '10.9.0.0/16'], primaryRoutes: ['192.168.1.0/24'] },
    routing: { advertiseRoutes: ['192.168.1.0/24', '10.0.0.0/8', '10.9.0.0/16'], acceptRoutes: false, snatSubnetRoutes: true },
    peers: [{ name: 'office', online: true, routes: ['172.16.0.0/12'], primaryRoutes: ['172.16.0.0/12'] }]
  } as unknown as LocalStatus
  t.same(formatRoutes(st), [
    'routes advertised: 192.168.1.0/24 (approved, served, primary), 10.0.0.0/8 (awaiting approval), 10.9.0.0/16 (approved, served, standby); masqueraded',
    'route 172.16.0.0/12 via office (primary): not used (run \'warren up --accept-routes\' to use it)'
  ])
  const using = {
    ...st,
    self: undefined,
    routing: { ...st.routing, acceptRoutes: true },
    peers: [{ name: 'office', online: true, routes: ['172.16.0.0/12'], primaryRoutes: ['172.16.0.0/12'], routesInUse: ['172.16.0.0/12'] },
      { name: 'office-2', online: true, routes: ['172.16.0.0/12'] }, { name: 'office-3', online: false, routes: ['172.16.0.0/12'] }]
  } as unknown as LocalStatus
  t.same(formatRoutes(using), ['route 172.16.0.0/12 via office (primary): in use',
    'route 172.16.0.0/12 via office-2 (standby): not used (another router carries it)',
    'route 172.16.0.0/12 via office-3 (offline): not used (another router carries it)'], 'which router is primary, which stand by')
})
