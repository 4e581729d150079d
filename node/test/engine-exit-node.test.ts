import t from 'tap'
import type { FilterRule, LocalUpRequest, RoutingPrefs } from '@warren/protocol'
import { checkExitNode, routingPrefs } from '../src/daemon/join.js'
import { createEngine, type Firewall, type FirewallContext } from '../src/engine/index.js'
import { createExitRouting, createForwarding, ipv4Forwarding, IPV6_FORWARDING } from '../src/router/index.js'
import { createFakeWireGuard, createFakeRouter, createFakeSysctl, createFakeExitRoutingSystem } from '../src/testing.js'
import { testNode, asPeer, netmapFor } from './engine-netmap-fixtures.js'

/**
 * Exit nodes in the engine, with fakes: a client that names an exit node gets both default
 * routes in that peer's allowed-ips only and its routing through the mesh; leaving it, or
 * the exit node going away or losing approval, restores everything. An exit node forwards
 * for the mesh and always masquerades.
 */
const IF = 'wgex0'
const NONE: RoutingPrefs = { advertiseRoutes: [], acceptRoutes: false, snatSubnetRoutes: true }

function setup () {
  const wireguard = createFakeWireGuard({ interfaceName: IF })
  const router = createFakeRouter({ interfaceName: IF })
  const contexts: Array<{ filter: FilterRule[], ctx: FirewallContext }> = []
  const firewall: Firewall = { async up () {}, async set (filter, ctx) { contexts.push({ filter, ctx }) }, async close () {} }
  const sysctl = createFakeSysctl({ [ipv4Forwarding('eth0')]: '0', [ipv4Forwarding(IF)]: '0', [IPV6_FORWARDING]: '0' }, { '0.0.0.1': 'eth0', '::1': 'eth0' })
  const system = createFakeExitRoutingSystem(['192.168.1.0/24'])
  const engine = createEngine({ wireguard, router, firewall, forwarding: createForwarding(sysctl), exitRouting: createExitRouting(system) })
  return { engine, wireguard, router, contexts, sysctl, system }
}

const self = testNode(1)
const exitNode = testNode(2)
const other = testNode(3)
const offering = asPeer(exitNode, { routes: ['0.0.0.0/0', '::/0'] })

t.test('a client sends its internet traffic through the exit node it names, and leaving restores everything', async t => {
  const s = setup()
  const local = (routing: RoutingPrefs) => ({ privateKey: self.privateKey, interfaceName: IF, routing, exitBypass: ['192.0.2.10'] })
  const nm = netmapFor(self, [offering, asPeer(other)])
  await s.engine.apply(nm, local(NONE))
  t.same(s.system.items(), [], 'no exit node named: the host\'s routing is untouched')
  t.same(s.wireguard.device()!.peers.find(p => p.publicKey === exitNode.wgKey)!.allowedIps.length, 2, 'and the exit node carries its mesh addresses only')

  for (const name of ['node-2', 'NODE-2.warren.internal', '100.64.0.2', 'fd7a:115c:a1e0::2']) {
    await s.engine.apply(nm, local({ ...NONE, exitNode: name }))
    const peers = s.wireguard.device()!.peers
    t.same(peers.find(p => p.publicKey === exitNode.wgKey)!.allowedIps.filter(a => a.endsWith('/0')).sort(), ['0.0.0.0/0', '::/0'], `named ${name}: the exit node carries both default routes`)
    t.same(peers.find(p => p.publicKey === other.wgKey)!.allowedIps.length, 2, 'no other peer does')
    t.ok(s.system.items().includes(`4 route 0.0.0.0/0 dev ${IF} table 22434`) && s.system.items().includes('4 rule priority 5320 to 192.0.2.10/32 lookup main'), 'default routes into the mesh, the controller bypassed')
  }
  t.notOk(s.system.items().some(x => x.includes('192.168.1.0/24')), 'without allow-LAN-access the LAN goes through the exit node too')
  await s.engine.apply(nm, local({ ...NONE, exitNode: 'node-2', exitNodeAllowLanAccess: true }))
  t.ok(s.system.items().includes('4 route throw 192.168.1.0/24 table 22434'), 'with it the LAN stays local')
  await s.engine.apply(nm, { ...local({ ...NONE, exitNode: 'node-2' }), sharedPort: { wgPort: 41641, controlAddress: self.ipv4, controlPort: 41000, egress: {} } })
  t.ok(s.system.items().includes(`4 rule priority 5315 from ${self.ipv4}/32 ipproto udp sport 41000 lookup main`), 'the daemon\'s control socket (STUN, path probes) keeps the host\'s routes')

  await s.engine.apply(nm, local(NONE))
  t.same(s.system.items(), [], 'leaving the exit node removes its rules and routes')
  t.same(s.wireguard.device()!.peers.find(p => p.publicKey === exitNode.wgKey)!.allowedIps.length, 2, 'and its default routes')

  await s.engine.apply(nm, local({ ...NONE, exitNode: 'node-2' }))
  await s.engine.apply(netmapFor(self, [asPeer(exitNode), asPeer(other)]), local({ ...NONE, exitNode: 'node-2' }))
  t.same(s.system.items(), [], 'an exit node that stops offering (unapproved) is left')
  await s.engine.apply(nm, local({ ...NONE, exitNode: 'node-2' }))
  await s.engine.apply(netmapFor(self, [asPeer(other)]), local({ ...NONE, exitNode: 'node-2' }))
  t.same(s.system.items(), [], 'and one that leaves the map')
  await s.engine.apply(nm, local({ ...NONE, exitNode: 'node-3' }))
  t.same(s.system.items(), [], 'a peer that offers no exit node is never used as one')
  await s.engine.apply(nm, local({ ...NONE, exitNode: 'node-2' }))
  await s.engine.close()
  t.same(s.system.items(), [], 'close (warren down) restores the routing')
})

t.test('an exit node forwards the mesh into the internet, masquerading, and restores forwarding on close', async t => {
  const s = setup()
  const exitSelf = { ...self, advertisedRoutes: ['0.0.0.0/0', '::/0'], approvedRoutes: ['0.0.0.0/0', '::/0'] }
  const forward: FilterRule = { srcs: ['100.64.0.3/32'], protos: [6], ports: [{ first: 0, last: 65535 }], dsts: ['1.0.0.0/8'] }
  const routing: RoutingPrefs = { advertiseRoutes: ['0.0.0.0/0', '::/0'], acceptRoutes: false, snatSubnetRoutes: false }
  await s.engine.apply(netmapFor(exitSelf, [asPeer(other)], [forward]), { privateKey: self.privateKey, interfaceName: IF, routing })
  const router = s.contexts.at(-1)!.ctx.subnetRouter
  t.same(router?.routes, ['0.0.0.0/0', '::/0'], 'it serves both default routes')
  t.same(router?.filter, [forward], 'judged by the forward filter')
  t.equal(router?.snat, true, 'and masquerades even with --snat-subnet-routes=false: mesh addresses cannot go to the internet')
  t.equal(s.sysctl.values.get(ipv4Forwarding(IF)), '1', 'forwarding on for the mesh interface')
  t.equal(s.sysctl.values.get(ipv4Forwarding('eth0')), '1', 'and the uplink, for the replies (locked to the mesh by the firewall)')
  t.same(router?.lockedInterfaces, ['eth0'])
  await s.engine.apply(netmapFor({ ...exitSelf, approvedRoutes: [] }, [asPeer(other)], [forward]), { privateKey: self.privateKey, interfaceName: IF, routing })
  t.equal(s.contexts.at(-1)!.ctx.subnetRouter, undefined, 'unapproved: it forwards nothing')
  t.equal(s.sysctl.values.get(ipv4Forwarding(IF)), '0', 'and forwarding is back as it was')
  t.equal(s.sysctl.values.get(IPV6_FORWARDING), '0')
})

t.test('warren up: --advertise-exit-node adds both default routes, --exit-node names a peer that offers one', async t => {
  const prev: RoutingPrefs = { advertiseRoutes: ['10.1.0.0/16'], acceptRoutes: false, snatSubnetRoutes: true }
  const up = (req: Partial<LocalUpRequest>, previous: RoutingPrefs | undefined = prev): RoutingPrefs => routingPrefs({ controller: 'https://ctl', ...req }, previous, undefined)
  t.same(up({ advertiseExitNode: true }).advertiseRoutes, ['0.0.0.0/0', '10.1.0.0/16', '::/0'], 'added to the routes the last up advertised')
  t.same(up({ advertiseExitNode: false }, { ...prev, advertiseRoutes: ['0.0.0.0/0', '10.1.0.0/16', '::/0'] }).advertiseRoutes, ['10.1.0.0/16'], 'and withdrawn')
  t.same(up({}, { ...prev, advertiseRoutes: ['0.0.0.0/0', '::/0'] }).advertiseRoutes, ['0.0.0.0/0', '::/0'], 'an up that does not say keeps it')
  t.match(up({ exitNode: 'node-2', exitNodeAllowLanAccess: true }), { exitNode: 'node-2', exitNodeAllowLanAccess: true })
  t.match(up({}, { ...prev, exitNode: 'node-2', exitNodeAllowLanAccess: true }), { exitNode: 'node-2', exitNodeAllowLanAccess: true }, 'kept by a later up')
  t.notOk('exitNode' in up({ exitNode: '' }, { ...prev, exitNode: 'node-2' }), '--exit-node= stops using it')

  checkExitNode(up({ exitNode: 'node-2' }), [offering, asPeer(other)])
  t.throws(() => checkExitNode(up({ exitNode: 'node-3' }), [offering, asPeer(other)]),
    { code: 'bad_exit_node', field: 'exitNode', message: /no peer named "node-3" offers an exit node: use one of node-2/ }, 'a peer that is no exit node is refused, naming those that are')
  t.throws(() => checkExitNode(up({ exitNode: 'nosuch' }), [asPeer(other)]), /none does yet \(an exit node needs 'warren up --advertise-exit-node' and approval\)/)
})
