import t from 'tap'
import { generateWireGuardKeyPair } from '@warren/protocol'
import { createCommandRunner, createRecordingRunner, createRouter, createWireGuard, type RouterConfig, type WireGuardConfig } from '@warren/node'
import { createTopology, netnsSkipReason } from '../src/index.js'

const skip = netnsSkipReason()
const MUTATING = /^(wg set|wireguard-go|ip (-6 )?(addr|route) (add|del|replace)|ip link (add|del|set))/

/** seeded permutations, so a failure names an order that can be replayed */
function orders<T> (xs: T[], count: number): T[][] {
  const out: T[][] = []
  let s = 12345
  for (let n = 0; n < count; n++) {
    const o = [...xs]
    for (let i = o.length - 1; i > 0; i--) {
      s = (s * 1103515245 + 12345) % 2 ** 31
      const j = s % (i + 1);
      [o[i], o[j]] = [o[j]!, o[i]!]
    }
    out.push(o)
  }
  return out
}

t.test('on a real interface, router and WireGuard reach each table state from any order, and repeats change nothing', { skip }, async t => {
  const topo = await createTopology(t, { hosts: 1 })
  const host = topo.hosts[0]!
  const ifname = host.interfaceName()
  const runner = createRecordingRunner(createCommandRunner({ netns: host.netns }))
  const router = createRouter({ runner, interfaceName: ifname })
  const wg = createWireGuard({ runner, interfaceName: ifname })
  const key = generateWireGuardKeyPair().privateKey
  const [p1, p2, p3] = [1, 2, 3].map(() => generateWireGuardKeyPair().publicKey) as [string, string, string]
  const routerCases: Array<{ name: string, in: RouterConfig }> = [
    { name: 'none', in: { interfaceName: ifname, addresses: [], routes: [] } },
    { name: 'mesh', in: { interfaceName: ifname, addresses: ['100.64.0.5/32', 'fd7a:115c:a1e0::5/128'], routes: ['100.64.0.0/10', 'fd7a:115c:a1e0::/48'] } },
    { name: 'moved, host route, mtu', in: { interfaceName: ifname, addresses: ['100.64.0.6/32'], routes: ['100.64.0.0/10', '100.100.100.100/32'], mtu: 1380 } }
  ]
  const wgCases: Array<{ name: string, in: WireGuardConfig }> = [
    { name: 'no peers', in: { interfaceName: ifname, privateKey: key, listenPort: 41641, peers: [] } },
    { name: 'two peers', in: { interfaceName: ifname, privateKey: key, listenPort: 41641, peers: [{ publicKey: p1, allowedIps: ['100.64.0.1/32'], endpoint: '10.1.2.3:41641', persistentKeepalive: 25 }, { publicKey: p2, allowedIps: ['100.64.0.2/32', 'fd7a:115c:a1e0::2/128'] }] } },
    { name: 'swap one', in: { interfaceName: ifname, privateKey: key, listenPort: 41642, peers: [{ publicKey: p1, allowedIps: ['100.64.0.1/32'], endpoint: '[fd00::3]:41641', persistentKeepalive: 25 }, { publicKey: p3, allowedIps: ['100.64.0.3/32'] }] } }
  ]
  await wg.up()
  for (const order of orders(routerCases.flatMap(r => wgCases.map(w => ({ r, w }))), 3)) {
    for (const { r, w } of order) {
      await wg.set(w.in)
      await router.set(r.in)
      const addrs = JSON.parse((await host.exec(['ip', '-j', 'addr', 'show', 'dev', ifname])).stdout)[0]
      const global = addrs.addr_info.filter((a: { scope: string }) => a.scope === 'global').map((a: { local: string, prefixlen: number }) => `${a.local}/${a.prefixlen}`).sort()
      t.same(global, [...r.in.addresses].sort(), `${r.name}/${w.name}: addresses`)
      if (r.in.mtu !== undefined) t.equal(addrs.mtu, r.in.mtu, `${r.name}: mtu`)
      const routes = [(await host.exec(['ip', 'route', 'show', 'dev', ifname])).stdout, (await host.exec(['ip', '-6', 'route', 'show', 'dev', ifname])).stdout].join('')
      for (const want of r.in.routes) t.match(routes, want.replace(/\/32$/, ''), `${r.name}: route ${want}`)
      const peers = (await wg.status()).peers.map(p => `${p.publicKey} ${p.allowedIps.join(',')} ${p.endpoint ?? '-'}`).sort()
      t.same(peers, w.in.peers.map(p => `${p.publicKey} ${[...p.allowedIps].sort().join(',')} ${p.endpoint ?? '-'}`).sort(), `${w.name}: peers`)
      runner.calls.length = 0
      await wg.set(w.in)
      await router.set(r.in)
      t.same(runner.matching(MUTATING).map(c => c.argv.join(' ')), [], `${r.name}/${w.name}: repeating runs only reads`)
    }
  }
  await router.close()
  await wg.close()
})
