import t from 'tap'
import { startWith, connectReady, waitUntil, type MapTestClient } from './map-harness.js'

/**
 * call-me-maybe through the real map protocol: a node that starts a direct-path burst
 * toward a peer has the controller tell the peer at once, but only a peer the policy lets
 * it talk to, and only as often as the per-node rate allows.
 */

const calls = (c: MapTestClient): Array<Record<string, unknown>> => c.messages.filter(m => m.type === 'call-me-maybe')
const call = (c: MapTestClient, peer: string): void => c.send(JSON.stringify({ type: 'call-me-maybe', peer }))

t.test('a call reaches the peer (named by node id or WireGuard key) and says who called', async t => {
  const { srv, nodes: [a, b] } = await startWith(t, ['a', 'b'])
  const ca = await connectReady(srv.url, a!)
  const cb = await connectReady(srv.url, b!)
  call(ca, b!.node.id)
  await waitUntil(() => calls(cb).length === 1, 'the call at b')
  t.same(calls(cb)[0], { type: 'call-me-maybe', peer: a!.node.wgKey, peerId: a!.node.id })
  call(cb, a!.node.wgKey)
  await waitUntil(() => calls(ca).length === 1, 'the call back at a')
  t.same(calls(ca)[0], { type: 'call-me-maybe', peer: b!.node.wgKey, peerId: b!.node.id })
  t.same(calls(cb).length, 1, 'the caller hears nothing of its own call')
  t.same([...ca.problems, ...cb.problems], [], 'every message fits the wire schema')
})

t.test('a call to a node the policy keeps apart, to no node, or over the rate is dropped; the session goes on', async t => {
  const { srv, nodes: [a, b, c] } = await startWith(t, ['a', 'b', 'c'], { callMeMaybeRate: { burst: 3, perSecond: 0.001 } })
  srv.source.patch(a!.node.id, { tags: ['tag:x'] })
  srv.source.patch(b!.node.id, { tags: ['tag:x'] })
  srv.source.patch(c!.node.id, { tags: ['tag:y'] })
  const ca = await connectReady(srv.url, a!)
  const cb = await connectReady(srv.url, b!)
  const cc = await connectReady(srv.url, c!)
  call(ca, c!.node.id)
  call(ca, 'no-such-node')
  call(ca, b!.node.id)
  await waitUntil(() => calls(cb).length === 1, 'the allowed call at b')
  t.same(calls(cc), [], 'c, which the policy keeps from a, hears nothing')
  call(ca, b!.node.id)
  call(cc, c!.node.id)
  call(cb, a!.node.id)
  await waitUntil(() => calls(ca).length === 1, 'b\'s call at a')
  t.equal(calls(cb).length, 1, 'a\'s fourth call is over its rate of three and is dropped')
  t.notOk(ca.isClosed(), 'a dropped call does not end the session')
  t.equal(ca.lastError(), undefined, 'and is not answered')
})

t.test('a malformed call is refused with an error that names the field', async t => {
  const { srv, nodes: [a] } = await startWith(t, ['a'])
  const ca = await connectReady(srv.url, a!)
  call(ca, '')
  const closed = await ca.closed
  t.equal(closed.code, 4400)
  t.match(ca.lastError()?.message, /call-me-maybe.*\/peer/)
})
