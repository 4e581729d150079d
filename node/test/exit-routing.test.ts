import t from 'tap'
import { createExitRouting, createIpExitRoutingSystem, EXIT_TABLE } from '../src/router/index.js'
import { desiredExitItems, exitCommands, planExit, routeItem, ruleItem } from '../src/router/exit-routing-plan.js'
import { createFakeCommandRunner, createFakeExitRoutingSystem } from '../src/testing.js'

/**
 * A client's use of an exit node: a table of Warren's own with the default routes into the
 * mesh interface, policy rules that keep WireGuard's own packets (fwmark) and the
 * controller and relays on the main table, and `throw` routes for what stays local. Set
 * is idempotent and order-independent; leaving removes exactly what Warren added.
 */
const IF = 'wgx0'
const T = String(EXIT_TABLE)

t.test('the plan: default routes into the mesh, bypass rules, the LAN thrown back with allow-LAN-access', async t => {
  const items = desiredExitItems({ interfaceName: IF, bypass: ['192.0.2.10', '2001:db8::10', '192.0.2.10'], lan: ['192.168.1.0/24'], control: [{ address: '100.64.0.1', port: 41000 }, { address: 'fd7a:115c:a1e0::1', port: 41000 }] })
  const lines = exitCommands({ del: [], add: items }).map(a => a.join(' '))
  t.same(lines.filter(l => l.includes(' route ')), [
    `ip -4 route add 0.0.0.0/0 dev ${IF} table ${T}`,
    `ip -4 route add throw 169.254.0.0/16 table ${T}`,
    `ip -4 route add throw 192.168.1.0/24 table ${T}`,
    `ip -4 route add throw 224.0.0.0/4 table ${T}`,
    `ip -6 route add ::/0 dev ${IF} table ${T}`,
    `ip -6 route add throw fe80::/10 table ${T}`,
    `ip -6 route add throw ff00::/8 table ${T}`
  ], 'routes first, so no packet meets a half-built table')
  t.same(lines.filter(l => l.includes(' rule ')), [
    'ip -4 rule add priority 5310 fwmark 0x57a2 lookup main',
    'ip -4 rule add priority 5315 from 100.64.0.1/32 ipproto udp sport 41000 lookup main',
    'ip -4 rule add priority 5320 to 192.0.2.10/32 lookup main',
    `ip -4 rule add priority 5370 lookup ${T}`,
    'ip -6 rule add priority 5310 fwmark 0x57a2 lookup main',
    'ip -6 rule add priority 5315 from fd7a:115c:a1e0::1/128 ipproto udp sport 41000 lookup main',
    'ip -6 rule add priority 5320 to 2001:db8::10/128 lookup main',
    `ip -6 rule add priority 5370 lookup ${T}`
  ], 'WireGuard\'s marked packets, the daemon\'s control sockets and the bypass addresses keep the main table; the rest goes to Warren\'s table')
  t.throws(() => desiredExitItems({ interfaceName: IF, bypass: ['controller.example'], lan: [] }), { code: 'bad_config', message: /bypass "controller.example" is not an IP address/ })
})

t.test('kernel state reads back as the same items, and rules of others are not Warren\'s', async t => {
  t.same(ruleItem(4, { priority: 5320, dst: '192.0.2.10', table: 'main' })?.spec, ['priority', '5320', 'to', '192.0.2.10/32', 'lookup', 'main'])
  t.same(ruleItem(6, { priority: 5310, src: 'all', fwmark: '0x57a2', table: 'main' })?.spec, ['priority', '5310', 'fwmark', '0x57a2', 'lookup', 'main'])
  t.same(ruleItem(4, { priority: 5315, src: '100.64.0.1', ipproto: 'udp', sport: 41000, table: 'main' })?.spec,
    ['priority', '5315', 'from', '100.64.0.1/32', 'ipproto', 'udp', 'sport', '41000', 'lookup', 'main'], 'as `ip -j rule` prints a control socket\'s rule')
  t.equal(ruleItem(4, { priority: 5270, table: '52' }), undefined, 'Tailscale\'s rule is not ours')
  t.equal(ruleItem(4, { priority: 32766, table: 'main' }), undefined, 'nor the main table\'s')
  t.same(routeItem(4, { dst: 'default', dev: IF })?.spec, ['0.0.0.0/0', 'dev', IF, 'table', T])
  t.same(routeItem(6, { type: 'throw', dst: 'fe80::/10' })?.spec, ['throw', 'fe80::/10', 'table', T])
  const desired = desiredExitItems({ interfaceName: IF, bypass: ['192.0.2.10'], lan: [] })
  const readBack = desired.map(i => i.kind === 'rule'
    ? ruleItem(i.family, { priority: Number(i.spec[1]), ...(i.spec[2] === 'to' ? { dst: i.spec[3]!.split('/')[0]!, dstlen: Number(i.spec[3]!.split('/')[1]) } : {}), ...(i.spec[2] === 'fwmark' ? { fwmark: i.spec[3]! } : {}), table: i.spec.at(-1)! })!
    : routeItem(i.family, i.spec[0] === 'throw' ? { type: 'throw', dst: i.spec[1]! } : { dst: i.spec[0]!.endsWith('/0') ? 'default' : i.spec[0]!, dev: i.spec[2]! })!)
  t.same(planExit(readBack, desired), { del: [], add: [] }, 'what the kernel holds after an apply is a plan with nothing to do')
})

t.test('set is idempotent and order-independent; leaving restores exactly the state before', async t => {
  const sys = createFakeExitRoutingSystem(['192.168.1.0/24', 'fd00:5::/64'])
  const exit = createExitRouting(sys)
  const requests = [
    { interfaceName: IF, bypass: ['192.0.2.10'], allowLanAccess: false },
    { interfaceName: IF, bypass: ['192.0.2.10', '198.51.100.7'], allowLanAccess: true },
    { interfaceName: IF, bypass: [], allowLanAccess: false }
  ]
  const want = new Map<number, string[]>()
  for (const [i, r] of requests.entries()) {
    const fresh = createFakeExitRoutingSystem(sys.lanSubnets)
    await createExitRouting(fresh).set(r)
    want.set(i, fresh.items())
  }
  for (let round = 0; round < 20; round++) {
    const i = Math.floor(Math.random() * requests.length)
    await exit.set(requests[i])
    t.same(sys.items(), want.get(i), `round ${round}: request ${i} gives the same state as on a fresh host`)
    t.same(await exit.set(requests[i]), { added: 0, removed: 0 }, 'and again changes nothing')
  }
  t.equal(sys.marks.get(IF), true, 'WireGuard marks its own packets while an exit node is used')
  await exit.set(requests[1])
  t.ok(sys.items().some(x => x.includes('throw 192.168.1.0/24')) && sys.items().some(x => x.includes('throw fd00:5::/64')), 'allow-LAN-access keeps the connected subnets local')
  await exit.set(undefined)
  t.same(sys.items(), [], 'leaving the exit node removes every rule and route')
  t.equal(sys.marks.get(IF), false, 'and the mark')
  await exit.set(requests[0])
  await exit.close()
  t.same(sys.items(), [], 'close does too')
})

t.test('the real system reads with ip -j, removes only Warren\'s items, and reads the LAN without the mesh', async t => {
  const runner = createFakeCommandRunner()
    .on('ip -j -4 rule show', { stdout: JSON.stringify([{ priority: 0, table: 'local' }, { priority: 5270, table: '52' }, { priority: 5370, table: T }, { priority: 32766, table: 'main' }]) })
    .on(`ip -j -4 route show table ${T}`, { stdout: JSON.stringify([{ dst: 'default', dev: IF }]) })
    .on('ip -j -6 rule show', { stdout: '[]' })
    .on(`ip -j -6 route show table ${T}`, { stdout: '' })
  const exit = createExitRouting(createIpExitRoutingSystem(runner))
  await exit.set(undefined)
  t.same(runner.calls.filter(c => !c.argv.includes('-j')).map(c => c.argv.join(' ')), [
    `ip -4 rule del priority 5370 lookup ${T}`,
    `ip -4 route del 0.0.0.0/0 dev ${IF} table ${T}`
  ], 'what a previous run left is removed, the rule before the route; Tailscale\'s and the system\'s rules stay')
  runner.reset()
  await exit.set(undefined)
  t.same(runner.calls, [], 'once clean, a node that uses no exit node runs no commands for it on each map')

  const lanRunner = createFakeCommandRunner()
    .on('ip -j -4 route show table main scope link', { stdout: JSON.stringify([{ dst: '192.168.1.0/24', dev: 'eth0' }, { dst: '100.64.0.0/10', dev: IF }]) })
    .on('ip -j -6 route show table main proto kernel', { stdout: JSON.stringify([{ dst: 'fd00:5::/64', dev: 'eth0' }, { dst: 'fe80::/64', dev: 'eth0' }, { dst: 'fd7a:115c:a1e0::/48', dev: IF }]) })
  t.same(await createIpExitRoutingSystem(lanRunner).lan(IF), ['192.168.1.0/24', 'fd00:5::/64'], 'connected subnets, not the mesh, not link-local')
})
