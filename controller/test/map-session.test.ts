import t from 'tap'
import type { MapDelta, Node, Peer } from '@warren/protocol'
import { startMapTestServer, startWith, connectReady, waitUntil, type MapTestClient } from './map-harness.js'

t.test('first message is the full map, then sequenced deltas', async t => {
  const { srv, nodes: [a, b] } = await startWith(t, ['alpha', 'beta'])
  const ca = await connectReady(srv.url, a)
  t.teardown(ca.close)
  t.equal(ca.messages[0]?.type, 'challenge', 'the server speaks first with a challenge')
  t.equal(ca.messages[1]?.type, 'map', 'then the full map')
  t.equal(ca.netmap!.self.id, a.node.id, 'self is the node itself')
  t.same(ca.peerNames(), ['beta'])
  t.same(ca.netmap!.dns, { domain: 'warren.internal', magicDns: true })
  t.equal(ca.seq, 1)
  t.notOk('machineKey' in ca.netmap!.peers[0]!, 'peers do not carry machine keys')

  // Connecting makes alpha online; alpha itself learns it through a self delta.
  await waitUntil(() => ca.netmap!.self.online, 'alpha online in its own map')
  const cb = await connectReady(srv.url, b)
  t.teardown(cb.close)
  await waitUntil(() => ca.netmap!.peers.find(p => p.name === 'beta')?.online === true, 'beta online at alpha')
  t.ok(cb.netmap!.peers.find(p => p.name === 'alpha'), 'beta sees alpha')
  t.same(ca.problems, [], 'every message matched the schema and seq grew by one')
  t.same(cb.problems, [])
})

t.test('a third node joining gives each of the first two exactly one peersChanged', async t => {
  const { srv, nodes: [a, b] } = await startWith(t, ['alpha', 'beta'])
  const ca = await connectReady(srv.url, a)
  const cb = await connectReady(srv.url, b)
  t.teardown(ca.close)
  t.teardown(cb.close)
  // Let the online changes settle first: each node sees itself and the other online.
  await waitUntil(() => [ca, cb].every(c => c.netmap!.self.online && c.netmap!.peers[0]?.online === true), 'both online')
  const [da, db] = [ca.deltas.length, cb.deltas.length]

  srv.add({ name: 'gamma' })
  await waitUntil(() => ca.peerNames().includes('gamma') && cb.peerNames().includes('gamma'), 'gamma at both')
  await new Promise(resolve => setTimeout(resolve, 100))
  for (const [c, before] of [[ca, da], [cb, db]] as Array<[MapTestClient, number]>) {
    const fresh = c.deltas.slice(before)
    t.equal(fresh.length, 1, 'one delta')
    t.same(fresh[0]!.peersChanged?.map(p => p.name), ['gamma'], 'carrying only gamma')
    t.equal(fresh[0]!.peersRemoved, undefined)
  }
})

t.test('online, offline and endpoints reach peers', async t => {
  const { srv, nodes: [a, b] } = await startWith(t, ['alpha', 'beta'])
  const ca = await connectReady(srv.url, a)
  t.teardown(ca.close)
  const peerB = (): { online: boolean, endpoints: string[], lastSeen?: string } => ca.netmap!.peers.find(p => p.name === 'beta')!
  t.equal(peerB().online, false, 'beta starts offline')

  const cb = await connectReady(srv.url, b, { endpoints: ['192.0.2.7:41641'] })
  await waitUntil(() => peerB().online, 'beta online')
  await waitUntil(() => peerB().endpoints.length === 1, 'beta endpoints from hello')
  t.same(peerB().endpoints, ['192.0.2.7:41641'])

  cb.send(JSON.stringify({ type: 'endpoints', endpoints: ['192.0.2.8:41641', '[2001:db8::1]:41641'] }))
  await waitUntil(() => peerB().endpoints.length === 2, 'endpoints update')
  t.same(peerB().endpoints, ['192.0.2.8:41641', '[2001:db8::1]:41641'])

  cb.send(JSON.stringify({ type: 'endpoints', endpoints: ['not-an-endpoint:1'] }))
  await waitUntil(() => cb.lastError() !== undefined, 'error for a bad endpoint')
  t.equal(cb.lastError()!.code, 'bad_endpoint')
  t.match(cb.lastError()!.message, /endpoints\[0\].*IP address and UDP port/)
  t.same(srv.source.getNode(b.node.id)!.endpoints, ['192.0.2.8:41641', '[2001:db8::1]:41641'], 'a bad update changes nothing')
  t.notOk(cb.isClosed(), 'and the session stays up')

  await cb.close()
  await waitUntil(() => !peerB().online, 'beta offline after it disconnects')
  t.ok(peerB().lastSeen, 'with a last seen time')
  t.notOk(srv.source.getNode(b.node.id)!.online)
})

t.test('a pending node gets only itself; approval brings its peers', async t => {
  const srv = await startMapTestServer()
  t.teardown(srv.close)
  const a = srv.add({ name: 'alpha' })
  const p = srv.add({ name: 'newbie', status: 'pending' })
  const ca = await connectReady(srv.url, a)
  const cp = await connectReady(srv.url, p)
  t.teardown(ca.close)
  t.teardown(cp.close)
  t.equal(cp.netmap!.self.status, 'pending')
  t.same(cp.netmap!.peers, [], 'no peers while pending')
  t.same(ca.peerNames(), [], 'nor is it anyone\'s peer')

  srv.source.patch(p.node.id, { status: 'active' })
  await waitUntil(() => cp.peerNames().includes('alpha'), 'alpha after approval')
  await waitUntil(() => ca.peerNames().includes('newbie'), 'newbie at alpha')
  t.equal(cp.netmap!.self.status, 'active')
  t.ok(cp.deltas.some(d => d.peersChanged?.some(x => x.name === 'alpha')), 'peers came as a delta')
})

t.test('deleting a node reaches every peer and closes its own session', async t => {
  const srv = await startMapTestServer()
  t.teardown(srv.close)
  const nodes = [srv.add({ name: 'alpha' }), srv.add({ name: 'beta' }), srv.add({ name: 'gamma' })]
  const clients = await Promise.all(nodes.map(async n => await connectReady(srv.url, n)))
  t.teardown(async () => { for (const c of clients) await c.close() })
  const start = Date.now()
  srv.source.remove(nodes[2]!.node.id)
  await waitUntil(() => clients.slice(0, 2).every(c => !c.peerNames().includes('gamma')), 'gamma gone at peers')
  t.comment(`removed in ${Date.now() - start} ms`)
  t.ok(clients[0]!.deltas.some(d => d.peersRemoved?.includes(nodes[2]!.node.id)), 'as peersRemoved')
  const closed = await clients[2]!.closed
  t.equal(closed.code, 4403)
  t.equal(clients[2]!.lastError()?.code, 'node_deleted')
})

t.test('expiry by an admin or by the key expiry time removes the node from peers', async t => {
  const { srv, nodes: [a, b] } = await startWith(t, ['alpha', 'beta'])
  const c = srv.add({ name: 'gamma' })
  const ca = await connectReady(srv.url, a)
  const cb = await connectReady(srv.url, b)
  const cc = await connectReady(srv.url, c)
  t.teardown(async () => { await ca.close(); await cb.close(); await cc.close() })
  t.same(ca.peerNames(), ['beta', 'gamma'])

  srv.source.patch(b.node.id, { status: 'expired' })
  await waitUntil(() => !ca.peerNames().includes('beta'), 'beta gone after admin expiry')
  t.equal((await cb.closed).code, 4403)
  t.equal(cb.lastError()?.code, 'node_expired')

  // A key expiry time set once every node is connected, so that a slow start cannot pass it first.
  srv.source.patch(c.node.id, { keyExpiry: new Date(Date.now() + 300).toISOString() })
  await waitUntil(() => !ca.peerNames().includes('gamma'), 'gamma gone when its key expires')
  t.equal((await cc.closed).code, 4403)
  t.match(cc.lastError()?.message, /expired/)
})

t.test('ephemeral nodes are deleted once they stay away, not while connected', async t => {
  // The timeout is long enough for a loaded machine to connect the node before it runs out.
  const timeoutMs = 2000
  const srv = await startMapTestServer({ ephemeralTimeoutMs: timeoutMs })
  t.teardown(srv.close)
  const e = srv.add({ name: 'temp', ephemeral: true })
  const ce = await connectReady(srv.url, e)
  const a = srv.add({ name: 'alpha' })
  const ca = await connectReady(srv.url, a)
  t.teardown(ca.close)
  await new Promise(resolve => setTimeout(resolve, timeoutMs * 1.5))
  t.ok(srv.source.getNode(e.node.id), 'still there while connected')
  await ce.close()
  await waitUntil(() => srv.source.getNode(e.node.id) === undefined, 'ephemeral node deleted')
  await waitUntil(() => !ca.peerNames().includes('temp'), 'and gone from its peers')

  const late = srv.add({ name: 'never', ephemeral: true })
  await waitUntil(() => srv.source.getNode(late.node.id) === undefined, 'an ephemeral node that never connects is deleted too')
})

t.test('an ephemeral node that logs out is deleted at once; a lasting node that does is kept', async t => {
  const srv = await startMapTestServer({ ephemeralTimeoutMs: 600_000 })
  t.teardown(srv.close)
  const e = srv.add({ name: 'temp', ephemeral: true })
  const keep = srv.add({ name: 'keep' })
  const ce = await connectReady(srv.url, e)
  const ck = await connectReady(srv.url, keep)
  t.teardown(ck.close)
  ck.send(JSON.stringify({ type: 'logout' }))
  ce.send(JSON.stringify({ type: 'logout' }))
  await waitUntil(() => srv.source.getNode(e.node.id) === undefined, 'the ephemeral node is deleted long before its time away runs out')
  // The deletion and the error frame that tells the session race; wait for the frame.
  await waitUntil(() => ce.lastError() !== undefined, 'its session hears of it')
  t.equal(ce.lastError()?.code, 'node_deleted', 'and hears why')
  t.ok(srv.source.getNode(keep.node.id), 'a lasting node is kept')
  t.notOk(ck.isClosed(), 'and stays connected')
})

t.test('a node that stops answering pings is closed and marked offline', async t => {
  const srv = await startMapTestServer({ pingIntervalMs: 100 })
  t.teardown(srv.close)
  const a = srv.add({ name: 'alpha' })
  const b = srv.add({ name: 'beta' })
  const ca = await connectReady(srv.url, a)
  const cb = await connectReady(srv.url, b)
  t.teardown(ca.close)
  await waitUntil(() => ca.netmap!.peers[0]!.online, 'beta online')
  // A frozen node: its socket stays open but it no longer reads, so it answers no ping.
  cb.ws.pause()
  await waitUntil(() => !ca.netmap!.peers[0]!.online, 'beta offline after missed pongs')
  t.equal(srv.service.stats().connected, 1)
  cb.ws.terminate()
})

t.test('a node\'s online and endpoint changes reach each peer as one delta and are never echoed back', async t => {
  const { srv, nodes: [a, b, g] } = await startWith(t, ['alpha', 'beta', 'gamma'])
  const announced: string[] = []
  srv.source.events.on('node-upserted', (n: Node) => announced.push(n.name))
  const ca = await connectReady(srv.url, a)
  const cb = await connectReady(srv.url, b)
  t.teardown(async () => { await ca.close(); await cb.close() })
  // A domain change is the last thing queued, so once it arrived nothing else is on the way.
  let marks = 0
  const settled = async (clients: MapTestClient[]): Promise<void> => {
    const domain = `m${++marks}.internal`
    srv.service.setDomain(domain)
    await waitUntil(() => clients.every(c => c.netmap!.dns.domain === domain), `${domain} everywhere`)
  }
  await settled([ca, cb])
  const since = (c: MapTestClient, n: number): MapDelta[] => c.deltas.slice(n)
  let base = [ca.deltas.length, cb.deltas.length]

  const cg = await connectReady(srv.url, g, { endpoints: ['192.0.2.9:41641'] })
  t.ok(cg.netmap!.self.online, 'gamma\'s own first map already shows it online')
  t.same(cg.netmap!.self.endpoints, ['192.0.2.9:41641'], 'with its endpoints')
  const gammaAt = (c: MapTestClient): Peer | undefined => c.netmap!.peers.find(p => p.name === 'gamma')
  await waitUntil(() => gammaAt(ca)!.online && gammaAt(cb)!.online, 'gamma online at its peers')
  await settled([ca, cb, cg])
  t.equal(cg.deltas.length, 1, 'gamma hears nothing about itself after its map, only the domain mark')
  for (const [c, n] of [[ca, base[0]!], [cb, base[1]!]] as Array<[MapTestClient, number]>) {
    const fresh = since(c, n)
    t.equal(fresh.length, 2, 'one delta for gamma, then the mark')
    t.same(fresh[0]!.peersChanged?.map(p => [p.name, p.online, p.endpoints]), [['gamma', true, ['192.0.2.9:41641']]])
  }

  base = [ca.deltas.length, cb.deltas.length]
  cg.send(JSON.stringify({ type: 'endpoints', endpoints: ['192.0.2.10:41641'] }))
  await waitUntil(() => gammaAt(ca)!.endpoints[0] === '192.0.2.10:41641' && gammaAt(cb)!.endpoints[0] === '192.0.2.10:41641', 'new endpoints at the peers')
  await cg.close()
  await waitUntil(() => !gammaAt(ca)!.online && !gammaAt(cb)!.online, 'gamma offline at its peers')
  await settled([ca, cb])
  t.same(since(ca, base[0]!).map(d => d.peersChanged?.map(p => [p.online, p.endpoints[0]])), [[[true, '192.0.2.10:41641']], [[false, '192.0.2.10:41641']], undefined],
    'alpha: one delta for the endpoints, one for going offline, then the mark')
  t.equal(since(cb, base[1]!).length, 3, 'beta the same')
  t.same(announced, [], 'the map service\'s own writes never come back to it as node events')
  t.same(srv.source.getNode(g.node.id)!.endpoints, ['192.0.2.10:41641'], 'and the source has recorded them')
  t.notOk(srv.source.getNode(g.node.id)!.online)
  t.same([...ca.problems, ...cb.problems, ...cg.problems], [])
})
