import t from 'tap'
import type { FilterRule, RoutingPrefs } from '@warren/protocol'
import { createEngine, type Firewall, type FirewallContext } from '../src/engine/index.js'
import { routesInUse } from '../src/engine/subnet-routes.js'
import { createForwarding, ipv4Forwarding, IPV6_FORWARDING } from '../src/router/index.js'
import { createFakeWireGuard, createFakeRouter, createFakeSysctl } from '../src/testing.js'
import { testNode, asPeer, netmapFor } from './engine-netmap-fixtures.js'

/**
 * Subnet routes in the engine, with fakes: a client with --accept-routes gets the routes
 * its peers serve in WireGuard's allowed-ips and as routes on the mesh interface (the most
 * specific wins, one router per range); a router switches forwarding on only for its
 * routes, hands the firewall its forward filter, and restores every setting on close.
 */
const IF = 'wgrt0'
const accept: RoutingPrefs = { advertiseRoutes: [], acceptRoutes: true, snatSubnetRoutes: true }

function setup (sysctl = createFakeSysctl()) {
  const wireguard = createFakeWireGuard({ interfaceName: IF })
  const router = createFakeRouter({ interfaceName: IF })
  const contexts: Array<{ filter: FilterRule[], ctx: FirewallContext }> = []
  const order: string[] = []
  const firewall: Firewall = {
    async up () {},
    async set (filter, ctx) { contexts.push({ filter, ctx }); order.push('firewall') },
    async close () { order.push('firewall.close') }
  }
  const forwarding = createForwarding({ ...sysctl, write: async (k, v) => { order.push(`sysctl ${k}=${v}`); await sysctl.write(k, v) } })
  const engine = createEngine({ wireguard, router, firewall, forwarding })
  return { engine, wireguard, router, contexts, order, sysctl }
}

const self = testNode(1)
const r1 = testNode(2)
const r2 = testNode(3)
const plain = testNode(4)

t.test('a client uses peers\' routes only with acceptRoutes; the most specific wins, one router per range', async t => {
  const peers = [
    asPeer(r1, { routes: ['192.168.0.0/16', '10.1.0.0/24'] }),
    asPeer(r2, { routes: ['192.168.5.0/24', '10.1.0.0/24'] }),
    asPeer(plain)
  ]
  const nm = netmapFor(self, peers)
  const s = setup()
  await s.engine.apply(nm, { privateKey: self.privateKey, interfaceName: IF })
  t.same(s.wireguard.device()!.peers.map(p => p.allowedIps.length), [2, 2, 2], 'without acceptRoutes: mesh addresses only')
  t.same(s.router.state()!.routes, ['100.64.0.0/10', 'fd7a:115c:a1e0::/48'], 'and no subnet routes')

  await s.engine.apply(nm, { privateKey: self.privateKey, interfaceName: IF, routing: accept })
  const allowed = Object.fromEntries(s.wireguard.device()!.peers.map(p => [p.publicKey, p.allowedIps.filter(a => !a.startsWith('100.64.') && !a.startsWith('fd7a:'))]))
  t.same(allowed[r1.wgKey], ['10.1.0.0/24', '192.168.0.0/16'], 'r1 carries its /16 and the shared /24 (lower id)')
  t.same(allowed[r2.wgKey], ['192.168.5.0/24'], 'r2 carries the narrower /24 inside r1\'s /16: the kernel sends it there')
  t.same(allowed[plain.wgKey], [], 'a peer that serves nothing gets nothing')
  t.same(s.router.state()!.routes.sort(), ['10.1.0.0/24', '100.64.0.0/10', '192.168.0.0/16', '192.168.5.0/24', 'fd7a:115c:a1e0::/48'].sort(), 'each range is routed through the mesh interface')

  const offline = netmapFor(self, [asPeer(r1, { routes: ['10.1.0.0/24'], online: false }), asPeer(r2, { routes: ['10.1.0.0/24'] })])
  t.same(routesInUse(offline.peers, accept).get(r2.wgKey), ['10.1.0.0/24'], 'an online router wins over an offline one for the same range')
  const shared = [asPeer(r1, { routes: ['10.1.0.0/24'] }), asPeer(r2, { routes: ['10.1.0.0/24'], primaryRoutes: ['10.1.0.0/24'] })]
  t.same(routesInUse(shared, accept).get(r2.wgKey), ['10.1.0.0/24'], 'the primary the controller names wins over a lower id')
  t.same(routesInUse([asPeer(r1, { routes: ['10.9.0.0/16'] })], { ...accept, advertiseRoutes: ['10.9.0.0/16'] }).size, 0, 'a route this node advertises itself is reached directly')

  await s.engine.apply(netmapFor(self, [asPeer(plain)]), { privateKey: self.privateKey, interfaceName: IF, routing: accept })
  t.same(s.router.state()!.routes, ['100.64.0.0/10', 'fd7a:115c:a1e0::/48'], 'routes leave when their routers do')
})

t.test('a router switches forwarding on for its served routes only, after the firewall, and restores it on close', async t => {
  const sysctl = createFakeSysctl({ [ipv4Forwarding('eth1')]: '0', [ipv4Forwarding('eth2')]: '1', [IPV6_FORWARDING]: '0' },
    { '192.168.1.1': 'eth1', '10.2.0.1': 'eth2' })
  const s = setup(sysctl)
  const forward: FilterRule = { srcs: ['100.64.0.4/32'], protos: [6], ports: [{ first: 443, last: 443 }], dsts: ['192.168.1.0/24'] }
  const inbound: FilterRule = { srcs: ['100.64.0.4/32'], protos: [6], ports: [{ first: 22, last: 22 }] }
  const routerSelf = { ...self, advertisedRoutes: ['192.168.1.0/24', '10.2.0.0/16', 'fd00:1::/64'], approvedRoutes: ['192.168.1.0/24', '10.2.0.0/16', 'fd00:1::/64', '172.16.0.0/12'] }
  const routing: RoutingPrefs = { advertiseRoutes: ['192.168.1.0/24', '10.2.0.0/16', 'fd00:1::/64'], acceptRoutes: false, snatSubnetRoutes: false }
  const local = { privateKey: self.privateKey, interfaceName: IF, routing }
  await s.engine.apply(netmapFor(routerSelf, [asPeer(plain)], [inbound, forward]), local)
  const last = s.contexts.at(-1)!
  t.same(last.filter, [inbound], 'the inbound filter is what reaches the node itself')
  t.same(last.ctx.subnetRouter, {
    routes: ['192.168.1.0/24', '10.2.0.0/16', 'fd00:1::/64'],
    filter: [forward],
    snat: false,
    lockedInterfaces: ['eth1']
  }, 'the firewall gets the served routes (approved and advertised), the forward filter, no masquerade, and the interface Warren switches on')
  t.equal(sysctl.values.get(ipv4Forwarding(IF)), '1', 'the mesh interface forwards')
  t.equal(sysctl.values.get(ipv4Forwarding('eth1')), '1', 'the LAN interface forwards (for the replies)')
  t.equal(sysctl.values.get(IPV6_FORWARDING), '1', 'an IPv6 route needs IPv6 forwarding')
  t.ok(s.order.indexOf('firewall') < s.order.findIndex(o => o.startsWith('sysctl')), 'forwarding comes on only after the forward filter is in place')

  s.order.length = 0
  await s.engine.apply(netmapFor(routerSelf, [asPeer(plain)], [inbound, forward]), local)
  t.same(s.order, ['firewall'], 'applying again writes no setting')

  await s.engine.apply(netmapFor({ ...routerSelf, approvedRoutes: ['192.168.1.0/24'] }, [asPeer(plain)], [inbound, forward]), local)
  t.equal(sysctl.values.get(IPV6_FORWARDING), '0', 'a route no longer approved: its setting is put back')
  t.equal(sysctl.values.get(ipv4Forwarding('eth1')), '1', 'the others stay')

  await s.engine.close()
  t.equal(sysctl.values.get(ipv4Forwarding(IF)), '0', 'close: the mesh interface as before')
  t.equal(sysctl.values.get(ipv4Forwarding('eth1')), '0', 'the LAN interface as before')
  t.equal(sysctl.values.get(ipv4Forwarding('eth2')), '1', 'an interface that forwarded before Warren was never touched')
})

t.test('a node whose routes are not approved forwards nothing', async t => {
  const sysctl = createFakeSysctl({}, { '192.168.1.1': 'eth1' })
  const s = setup(sysctl)
  const routing: RoutingPrefs = { advertiseRoutes: ['192.168.1.0/24'], acceptRoutes: false, snatSubnetRoutes: true }
  await s.engine.apply(netmapFor({ ...self, advertisedRoutes: ['192.168.1.0/24'] }, []), { privateKey: self.privateKey, interfaceName: IF, routing })
  t.equal(s.contexts.at(-1)!.ctx.subnetRouter, undefined, 'no forward rules')
  t.same([...sysctl.values.keys()], [], 'no setting was written')
})
