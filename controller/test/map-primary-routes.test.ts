import t from 'tap'
import type { Peer } from '@warren/protocol'
import { startWith, connectReady, waitUntil, type MapTestClient } from './map-harness.js'
import { createPrimaryRoutes } from '../src/map/primary-routes.js'

const LAN = '192.168.1.0/24'
const serving = { advertisedRoutes: [LAN], approvedRoutes: [LAN] }

t.test('a route keeps its primary while it is online; another online router takes over, and a returning one does not take it back', async t => {
  const p = createPrimaryRoutes()
  const r1 = { id: 'n1', online: true, ...serving }
  const r2 = { id: 'n2', online: true, ...serving }
  t.same([...p.update(r2)], ['n2'], 'the first router is primary')
  t.same([...p.update(r1)], [], 'a lower id that comes online does not take the route')
  t.same(p.primaryOf('n2'), [LAN])
  t.same([...p.update({ ...r2, online: false })].sort(), ['n1', 'n2'], 'offline: the other takes over')
  t.same(p.primaryOf('n1'), [LAN])
  t.same([...p.update(r2)], [], 'back online: it stays with n1')
  t.same([...p.update({ ...r1, approvedRoutes: [] })].sort(), ['n1', 'n2'], 'an unapproved route moves too')
  t.same([...p.remove('n2')], ['n2'], 'no router left: no primary')
  t.same(p.primaryOf('n1'), [])
})

const primaryOf = (c: MapTestClient, name: string): Peer['primaryRoutes'] => c.netmap!.peers.find(x => x.name === name)?.primaryRoutes

t.test('a client\'s map moves the route to the other router the moment the primary\'s session ends', async t => {
  const { srv, nodes: [client] } = await startWith(t, ['client'])
  const a = srv.add({ name: 'router-a', ...serving })
  const b = srv.add({ name: 'router-b', ...serving })
  const cc = await connectReady(srv.url, client!)
  t.teardown(cc.close)
  const first = await connectReady(srv.url, a.node.id < b.node.id ? a : b)
  const firstName = first.netmap!.self.name
  const secondNode = a.node.id < b.node.id ? b : a
  const second = await connectReady(srv.url, secondNode)
  t.teardown(second.close)
  await waitUntil(() => primaryOf(cc, firstName)?.[0] === LAN, 'the router that came online first is primary')
  t.same(primaryOf(cc, secondNode.node.name), undefined, 'the other is a standby')
  await waitUntil(() => first.netmap!.self.primaryRoutes?.[0] === LAN, 'the primary\'s own map says it is primary')
  t.same(second.netmap!.self.primaryRoutes, undefined, 'the standby\'s own map does not')

  await first.close()
  await waitUntil(() => primaryOf(cc, secondNode.node.name)?.[0] === LAN, 'the standby takes over')
  await waitUntil(() => second.netmap!.self.primaryRoutes?.[0] === LAN, 'and its own map says it is primary now')
  t.same(primaryOf(cc, firstName), undefined, 'the old primary is no longer primary')

  const back = await connectReady(srv.url, first.netmap!.self.id === a.node.id ? a : b)
  t.teardown(back.close)
  await waitUntil(() => cc.netmap!.peers.every(x => x.online), 'the old primary is online again')
  t.same(primaryOf(cc, secondNode.node.name), [LAN], 'the route stays where it is')
  t.same(primaryOf(cc, firstName), undefined)
  t.same(cc.problems, [])
})

t.test('a router cut off is noticed by its own shorter keepalive, and its route moves; other nodes keep the long one', async t => {
  // The ordinary keepalive is far longer than the test: only the routers' one can notice.
  const { srv, nodes: [client, plain] } = await startWith(t, ['client', 'plain'], { pingIntervalMs: 600_000, routerPingIntervalMs: 100 })
  const a = srv.add({ name: 'router-a', ...serving })
  const b = srv.add({ name: 'router-b', ...serving })
  const cc = await connectReady(srv.url, client!)
  const cp = await connectReady(srv.url, plain!)
  const ca = await connectReady(srv.url, a)
  const cb = await connectReady(srv.url, b)
  t.teardown(async () => { await cc.close(); cp.ws.terminate(); ca.ws.terminate(); cb.ws.terminate() })
  await waitUntil(() => cc.netmap!.peers.length === 3 && cc.netmap!.peers.every(x => x.online), 'everyone online')
  const primaryName = (): string | undefined => cc.netmap!.peers.find(x => x.primaryRoutes?.[0] === LAN)?.name
  await waitUntil(() => primaryName() !== undefined, 'a primary router')
  const primary = primaryName()!
  const [cut, standby] = primary === 'router-a' ? [ca, 'router-b'] : [cb, 'router-a']
  // A router whose network is cut: the socket stays open but nothing comes back, not even pongs.
  cut.ws.pause()
  cp.ws.pause()
  await waitUntil(() => primaryOf(cc, standby)?.[0] === LAN, 'the standby takes the route over')
  t.notOk(cc.netmap!.peers.find(x => x.name === primary)!.online, 'the cut router is offline')
  t.ok(cc.netmap!.peers.find(x => x.name === 'plain')!.online, 'a frozen node without routes is not pinged as often')
})
