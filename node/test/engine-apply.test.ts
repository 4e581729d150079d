import t from 'tap'
import type { FilterRule, Netmap } from '@warren/protocol'
import { createEngine, desiredRouter, desiredWireGuard, type Firewall, type DnsConfigurator } from '../src/engine/index.js'
import { createFakeWireGuard, createFakeRouter } from '../src/testing.js'
import { testNode, asPeer, netmapFor } from './engine-netmap-fixtures.js'

const IF = 'wgeng0'
const self = testNode(1)
const [n2, n3, n4] = [testNode(2), testNode(3, { endpoints: [] }), testNode(4, { endpoints: ['[fd00::4]:41641', '10.99.0.4:41641'] })]
const local = { privateKey: self.privateKey, interfaceName: IF, listenPort: 41641 }
const rule: FilterRule = { srcs: ['100.64.0.2/32'], protos: [6], ports: [{ first: 22, last: 22 }] }

function setup (now?: () => Date) {
  const wireguard = createFakeWireGuard({ interfaceName: IF })
  const router = createFakeRouter({ interfaceName: IF })
  const filters: FilterRule[][] = []
  const order: string[] = []
  const firewall: Firewall = {
    async up () {},
    async set (filter, ctx) { t.equal(ctx.interfaceName, IF); filters.push(filter); order.push('firewall') },
    async close () { order.push('firewall.close') }
  }
  const dnsMaps: Netmap[] = []
  const dns: DnsConfigurator = { async set (nm) { dnsMaps.push(nm); order.push('dns') } }
  const engine = createEngine({ wireguard, router, firewall, dns, ...(now !== undefined ? { now } : {}) })
  return { engine, wireguard, router, filters, dnsMaps, order }
}

t.test('a netmap becomes WireGuard peers, addresses, routes, filter and DNS', async t => {
  const s = setup()
  const r = await s.engine.apply(netmapFor(self, [asPeer(n2), asPeer(n3), asPeer(n4)], [rule]), local)
  t.equal(r.active, true)
  t.equal(r.peers, 3)
  t.ok(r.durationMs >= 0, 'apply reports its duration')
  const dev = s.wireguard.device()!
  t.equal(dev.listenPort, 41641)
  t.same(dev.peers.map(p => [p.publicKey, p.allowedIps, p.endpoint, p.persistentKeepalive]), [
    [n2.wgKey, ['100.64.0.2/32', 'fd7a:115c:a1e0::2/128'], '10.99.0.2:41641', 25],
    [n3.wgKey, ['100.64.0.3/32', 'fd7a:115c:a1e0::3/128'], undefined, 25],
    [n4.wgKey, ['100.64.0.4/32', 'fd7a:115c:a1e0::4/128'], '[fd00::4]:41641', 25]
  ])
  t.same(s.router.state(), { up: true, mtu: 1420, addresses: ['100.64.0.1/32', 'fd7a:115c:a1e0::1/128'], routes: ['100.64.0.0/10', 'fd7a:115c:a1e0::/48'] })
  t.same(s.filters, [[rule]])
  t.equal(s.dnsMaps[0]!.peers.length, 3)
  t.same(s.order, ['firewall', 'dns'], 'the filter is applied before peers appear')
})

t.test('applying the same netmap twice changes nothing', async t => {
  const s = setup()
  const nm = netmapFor(self, [asPeer(n2), asPeer(n3)])
  await s.engine.apply(nm, local)
  const again = await s.engine.apply(structuredClone(nm), local)
  t.same(again.wireguard, { interface: false, added: [], updated: [], removed: [] })
  t.same(again.router, { link: false, addressesAdded: [], addressesRemoved: [], routesAdded: [], routesRemoved: [] })
})

t.test('removing one peer removes only that peer', async t => {
  const s = setup()
  await s.engine.apply(netmapFor(self, [asPeer(n2), asPeer(n3), asPeer(n4)]), local)
  const r = await s.engine.apply(netmapFor(self, [asPeer(n2), asPeer(n4)]), local)
  t.same(r.wireguard, { interface: false, added: [], updated: [], removed: [n3.wgKey] })
})

t.test('a pending or expired self gets no peers and an empty filter', async t => {
  for (const [what, patch] of [['pending', { status: 'pending' as const }], ['expired', { status: 'expired' as const }], ['past key expiry', { keyExpiry: '2020-01-01T00:00:00Z' }]] as const) {
    const s = setup()
    const me = { ...self, ...patch }
    const r = await s.engine.apply(netmapFor(me, [asPeer(n2)], [rule]), local)
    t.equal(r.active, false, what)
    t.same(s.wireguard.device()!.peers, [], `${what}: no peers`)
    t.same(s.filters, [[]], `${what}: nothing allowed in`)
    t.same(s.dnsMaps[0]!.peers, [], `${what}: no peer names`)
    t.same(s.router.state()!.addresses, ['100.64.0.1/32', 'fd7a:115c:a1e0::1/128'], `${what}: still owns its addresses`)
  }
})

t.test('peers with an expired key or our own key are left out', async t => {
  const now = new Date('2026-11-24T12:00:00Z')
  const nm = netmapFor(self, [asPeer(n2, { keyExpiry: '2026-11-24T11:59:59Z' }), asPeer(n3, { keyExpiry: '2026-11-25T00:00:00Z' }), { ...asPeer(n4), wgKey: self.wgKey }])
  t.same(desiredWireGuard(nm, local, now).peers.map(p => p.publicKey), [n3.wgKey])
})

t.test('desired router state takes the /48 of our IPv6 address', async t => {
  t.same(desiredRouter(netmapFor(testNode(9, { ipv6: 'fd12:3456:789a:1::9' }), []), { interfaceName: IF }).routes, ['100.64.0.0/10', 'fd12:3456:789a::/48'])
})

t.test('concurrent applies run one after another, last map wins', async t => {
  const s = setup()
  await Promise.all([
    s.engine.apply(netmapFor(self, [asPeer(n2)]), local),
    s.engine.apply(netmapFor(self, [asPeer(n3)]), local),
    s.engine.apply(netmapFor(self, [asPeer(n4)]), local)
  ])
  t.same(s.wireguard.device()!.peers.map(p => p.publicKey), [n4.wgKey])
  t.same(s.wireguard.history.map(h => [h.added.length, h.removed.length]), [[1, 0], [1, 1], [1, 1]])
})

t.test('a failing adapter names its stage, and the next apply still runs', async t => {
  const s = setup()
  const bad = netmapFor({ ...self, ipv4: '100.64.0.999' }, [asPeer(n2)])
  const err = await s.engine.apply(bad, local).catch(e => e)
  t.equal(err.code, 'apply_failed')
  t.match(err.message, /failed at router: .*'100\.64\.0\.999\/32' is not an IP address/)
  const ok = await s.engine.apply(netmapFor(self, [asPeer(n2)]), local)
  t.equal(ok.peers, 1)
})

t.test('close removes state through every adapter', async t => {
  const s = setup()
  await s.engine.apply(netmapFor(self, [asPeer(n2)]), local)
  await s.engine.close()
  t.equal(s.wireguard.isUp, false)
  t.same(s.router.state()!.addresses, [])
  t.ok(s.order.includes('firewall.close'))
})

t.test('endpoints chosen by the path manager win over the map, and moving them touches only WireGuard', async t => {
  const s = setup()
  const nm = netmapFor(self, [asPeer(n2), asPeer(n3), asPeer(n4)], [rule])
  await s.engine.apply(nm, { ...local, endpoints: new Map([[n4.wgKey, '192.0.2.40:40004']]) })
  const ep = (key: string): string | undefined => s.wireguard.device()!.peers.find(p => p.publicKey === key)?.endpoint
  t.equal(ep(n4.wgKey), '192.0.2.40:40004')
  t.equal(ep(n2.wgKey), '10.99.0.2:41641', 'peers without a choice keep the map endpoint')
  s.order.length = 0
  const changes = await s.engine.applyWireGuard(nm, { ...local, endpoints: new Map([[n4.wgKey, '127.0.0.1:50004'], [n3.wgKey, '192.0.2.30:40003']]) })
  t.same(changes, { interface: false, added: [], updated: [n3.wgKey, n4.wgKey], removed: [] })
  t.same(s.order, [], 'no firewall or DNS work')
  t.equal(ep(n4.wgKey), '127.0.0.1:50004')
  t.equal(ep(n3.wgKey), '192.0.2.30:40003', 'a peer with no map endpoint gets the chosen one')
  // A chosen path is pinned: WireGuard roaming away from it (to a relay port the peer
  // still sends from) is undone at the next apply ...
  s.wireguard.roam(n4.wgKey, '198.51.100.4:1234')
  await s.engine.applyWireGuard(nm, { ...local, endpoints: new Map([[n4.wgKey, '127.0.0.1:50004'], [n3.wgKey, '192.0.2.30:40003']]) })
  t.equal(ep(n4.wgKey), '127.0.0.1:50004')
  // ... while a map endpoint is a guess: a peer that roamed keeps its learned endpoint.
  await s.engine.applyWireGuard(nm, { ...local, endpoints: new Map([[n3.wgKey, '192.0.2.30:40003']]) })
  t.equal(ep(n4.wgKey), '[fd00::4]:41641', 'choice withdrawn: back to the map endpoint')
  s.wireguard.roam(n4.wgKey, '198.51.100.4:1234')
  await s.engine.applyWireGuard(nm, { ...local, endpoints: new Map([[n3.wgKey, '192.0.2.30:40003']]) })
  t.equal(ep(n4.wgKey), '198.51.100.4:1234', 'the roamed endpoint stays')
})
