import t from 'tap'
import { startMapTestServer, connectReady, waitUntil } from './map-harness.js'
import { createFakeMapPolicy } from '../src/testing.js'

t.test('the policy decides peers: others are never sent', async t => {
  const srv = await startMapTestServer({ policy: createFakeMapPolicy({ everyone: 'tag:server' }) })
  t.teardown(srv.close)
  const red1 = srv.add({ name: 'red1', tags: ['tag:red'] })
  const red2 = srv.add({ name: 'red2', tags: ['tag:red'] })
  const blue = srv.add({ name: 'blue1', tags: ['tag:blue'] })
  const server = srv.add({ name: 'db', tags: ['tag:server'] })
  const clients = await Promise.all([red1, red2, blue, server].map(async n => await connectReady(srv.url, n)))
  t.teardown(async () => { for (const c of clients) await c.close() })
  const [c1, c2, cb, cs] = clients
  t.same(c1!.peerNames(), ['db', 'red2'])
  t.same(cb!.peerNames(), ['db'])
  t.same(cs!.peerNames(), ['blue1', 'red1', 'red2'])
  t.equal(c1!.netmap!.filter[0]!.srcs.length, 4, 'the filter names only the allowed peers')

  // A new red node reaches the red nodes and the server; blue hears nothing of it.
  srv.add({ name: 'red3', tags: ['tag:red'] })
  await waitUntil(() => c2!.peerNames().includes('red3') && cs!.peerNames().includes('red3'), 'red3 at red2 and db')
  await new Promise(resolve => setTimeout(resolve, 80))
  const sawRed3 = (m: Record<string, unknown>): boolean => JSON.stringify(m).includes('red3')
  t.notOk(cb!.messages.some(sawRed3), 'blue never receives red3')

  // Retagging moves a node between groups: it leaves red maps and enters blue ones.
  srv.source.patch(red2.node.id, { tags: ['tag:blue'] })
  await waitUntil(() => cb!.peerNames().includes('red2') && !c1!.peerNames().includes('red2'), 'red2 moved to blue')
  await waitUntil(() => c2!.peerNames().join() === 'blue1,db', 'red2 sees blue now')
  t.same(clients.flatMap(c => c.problems), [])
})

t.test('a burst of 50 joins reaches a node as a few deltas', async t => {
  const srv = await startMapTestServer({ coalesceMs: 40 })
  t.teardown(srv.close)
  const a = srv.add({ name: 'alpha' })
  const ca = await connectReady(srv.url, a)
  t.teardown(ca.close)
  await waitUntil(() => ca.netmap!.self.online, 'alpha online')
  const before = ca.deltas.length
  for (let i = 0; i < 50; i++) srv.add({ name: `burst${i}` })
  await waitUntil(() => ca.netmap!.peers.length === 50, 'all 50 peers')
  await new Promise(resolve => setTimeout(resolve, 100))
  const got = ca.deltas.length - before
  t.ok(got <= 3, `${got} delta(s) for 50 joins`)
  t.equal(ca.deltas.slice(before).reduce((n, d) => n + (d.peersChanged?.length ?? 0), 0), 50, 'each join once')
})

t.test('a change reaches only the sessions it affects', async t => {
  const srv = await startMapTestServer({ policy: createFakeMapPolicy() })
  t.teardown(srv.close)
  const groups = ['tag:g1', 'tag:g2', 'tag:g3', 'tag:g4']
  const nodes = groups.flatMap(g => [1, 2, 3, 4, 5].map(i => srv.add({ name: `${g.slice(4)}-${i}`, tags: [g] })))
  const clients = await Promise.all(nodes.map(async n => await connectReady(srv.url, n)))
  t.teardown(async () => { for (const c of clients) await c.close() })
  await waitUntil(() => clients.every(c => c.netmap!.self.online && c.netmap!.peers.every(p => p.online)), 'everyone online')
  const before = clients.map(c => c.deltas.length)
  const fanoutBefore = srv.service.stats().fanout

  srv.source.patch(nodes[0]!.node.id, { endpoints: ['192.0.2.1:41641'] })
  await waitUntil(() => clients[0]!.netmap!.self.endpoints.length === 1 && clients.slice(1, 5).every(c => c.netmap!.peers.some(p => p.endpoints.length === 1)), 'g1 sees the change')
  const got = clients.map((c, i) => c.deltas.length - before[i]!)
  t.same(got.slice(0, 5), [1, 1, 1, 1, 1], 'the node itself and its 4 group peers get one delta each')
  t.same(got.slice(5), new Array(15).fill(0), 'the other groups get nothing')
  t.equal(srv.service.stats().fanout - fanoutBefore, 5, 'and only 5 sessions were even looked at')
})

t.test('metrics count sessions, messages and fan-out', async t => {
  const srv = await startMapTestServer()
  t.teardown(srv.close)
  const a = srv.add({ name: 'alpha' })
  const ca = await connectReady(srv.url, a)
  t.teardown(ca.close)
  srv.add({ name: 'beta' })
  await waitUntil(() => ca.peerNames().length === 1, 'beta')
  const text = await srv.service.metrics.registry.metrics()
  t.match(text, /warren_map_connected_nodes 1/)
  t.match(text, /warren_map_messages_sent_total\{type="map"\} 1/)
  t.match(text, /warren_map_messages_sent_total\{type="delta"\} [1-9]/)
  t.match(text, /warren_map_delta_fanout_count [1-9]/)
})

t.test('large messages go out in fragments and arrive whole, in order', async t => {
  const srv = await startMapTestServer({ fragmentBytes: 256 })
  t.teardown(srv.close)
  const a = srv.add({ name: 'alpha' })
  for (let i = 0; i < 30; i++) srv.add({ name: `peer${i}` })
  const ca = await connectReady(srv.url, a)
  t.teardown(ca.close)
  t.equal(ca.netmap!.peers.length, 30, 'a full map of ~10 KiB, sent as 256-byte fragments')
  for (let i = 0; i < 30; i++) srv.add({ name: `late${i}` })
  await waitUntil(() => ca.netmap!.peers.length === 60, 'a large delta')
  srv.source.remove(a.node.id)
  await ca.closed
  t.equal(ca.lastError()?.code, 'node_deleted', 'the error after them arrives intact')
  t.same(ca.problems, [], 'every message parsed and matched the schema')
})
