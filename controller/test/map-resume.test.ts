import t from 'tap'
import { startMapTestServer, startWith, connectClient, connectReady, waitUntil } from './map-harness.js'

t.test('a node that resumes gets only what changed while it was away', async t => {
  const { srv, nodes: [a, b] } = await startWith(t, ['alpha', 'beta'])
  const c = srv.add({ name: 'gamma' })
  const first = await connectReady(srv.url, a)
  await waitUntil(() => first.netmap!.self.online, 'alpha online')
  await first.close()
  const { session, seq } = first
  const before = first.netmap!

  // While alpha is away: gamma is deleted, delta joins, beta changes its name.
  srv.source.remove(c.node.id)
  srv.add({ name: 'delta' })
  srv.source.patch(b.node.id, { name: 'beta2', fqdn: 'beta2.warren.internal' })

  const again = connectClient(srv.url, a, { resume: { session: session!, seq } })
  t.teardown(again.close)
  again.netmap = before
  again.seq = seq
  await waitUntil(() => again.deltas.length > 0, 'resume delta')
  t.notOk(again.messages.some(m => m.type === 'map'), 'no full map')
  const d = again.deltas[0]!
  t.equal(d.seq, seq + 1, 'seq continues')
  t.same(d.peersChanged?.map(p => p.name).sort(), ['beta2', 'delta'], 'only the changed and the new peer')
  t.same(d.peersRemoved, [c.node.id], 'and the removed one')
  t.same(again.peerNames(), ['beta2', 'delta'])
  t.same(again.problems, [])
})

t.test('a stale or unknown resume gets a full map', async t => {
  const srv = await startMapTestServer({ resumeWindowMs: 100 })
  t.teardown(srv.close)
  const a = srv.add({ name: 'alpha' })
  srv.add({ name: 'beta' })
  const first = await connectReady(srv.url, a)
  await first.close()

  const wrongSeq = connectClient(srv.url, a, { resume: { session: first.session!, seq: first.seq + 5 } })
  await waitUntil(() => wrongSeq.netmap !== undefined, 'full map for a seq the server never sent')
  t.not(wrongSeq.session, first.session, 'a new session')
  t.same(wrongSeq.peerNames(), ['beta'])
  await wrongSeq.close()

  await waitUntil(() => srv.service.stats().sessions === 0, 'the held session dropped after the resume window')
  const expired = connectClient(srv.url, a, { resume: { session: wrongSeq.session!, seq: wrongSeq.seq } })
  t.teardown(expired.close)
  await waitUntil(() => expired.netmap !== undefined, 'full map once the held session was dropped')
  t.equal(expired.messages.filter(m => m.type === 'map').length, 1)
})

t.test('a second session for the same node replaces the first', async t => {
  const { srv, nodes: [a, b] } = await startWith(t, ['alpha', 'beta'])
  const cb = await connectReady(srv.url, b)
  t.teardown(cb.close)
  const one = await connectReady(srv.url, a)
  const two = await connectReady(srv.url, a)
  t.teardown(two.close)
  const closed = await one.closed
  t.equal(closed.code, 4409)
  t.equal(one.lastError()?.code, 'session_replaced')
  await new Promise(resolve => setTimeout(resolve, 60))
  t.ok(cb.netmap!.peers.find(p => p.name === 'alpha')!.online, 'alpha stays online at its peers')
  t.equal(srv.service.stats().connected, 2)
})
