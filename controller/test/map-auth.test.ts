import t from 'tap'
import WebSocket from 'ws'
import { generateMachineKeyPair, PROTOCOL_VERSION } from '@warren/protocol'
import { startMapTestServer, connectClient, makeNode, waitUntil, type MapTestClient } from './map-harness.js'

async function refused (c: MapTestClient): Promise<{ code: number, error: string, message: string }> {
  const closed = await c.closed
  const err = c.lastError()
  return { code: closed.code, error: err?.code ?? '(none)', message: err?.message ?? '' }
}

t.test('a hello that is not signed by the node\'s machine key is refused', async t => {
  const srv = await startMapTestServer()
  t.teardown(srv.close)
  const a = srv.add({ name: 'alpha' })
  const r = await refused(connectClient(srv.url, a, { signWith: generateMachineKeyPair() }))
  t.equal(r.code, 4401)
  t.equal(r.error, 'bad_signature')
  t.match(r.message, /signature does not verify/)
  t.equal(srv.service.stats().connected, 0)
  t.notOk(srv.source.getNode(a.node.id)!.online, 'the node stays offline')
})

t.test('a machine key no node has is refused', async t => {
  const srv = await startMapTestServer()
  t.teardown(srv.close)
  const r = await refused(connectClient(srv.url, makeNode({ name: 'stranger' })))
  t.equal(r.code, 4401)
  t.equal(r.error, 'unknown_node')
  t.match(r.message, /no node is registered with this machine key/)
})

t.test('another protocol version gets the version error', async t => {
  const srv = await startMapTestServer()
  t.teardown(srv.close)
  const a = srv.add({ name: 'alpha' })
  const r = await refused(connectClient(srv.url, a, { version: PROTOCOL_VERSION + 1 }))
  t.equal(r.code, 4426)
  t.equal(r.error, 'protocol_version')
  t.match(r.message, new RegExp(`version ${PROTOCOL_VERSION + 1}.*speaks (\\d+-)?${PROTOCOL_VERSION}; upgrade`))
})

t.test('an expired node cannot open a session', async t => {
  const srv = await startMapTestServer()
  t.teardown(srv.close)
  const a = srv.add({ name: 'alpha', status: 'expired' })
  const r = await refused(connectClient(srv.url, a))
  t.equal(r.code, 4403)
  t.equal(r.error, 'node_expired')
})

t.test('malformed messages are refused with the field that is wrong', async t => {
  const srv = await startMapTestServer()
  t.teardown(srv.close)
  const a = srv.add({ name: 'alpha' })
  const cases: Array<[string, string, RegExp]> = [
    ['{not json', 'invalid_json', /not valid JSON/],
    [JSON.stringify({ type: 'endpoints', endpoints: [] }), 'unexpected_message', /first map message must be a signed hello/],
    [JSON.stringify({ type: 'hello', version: PROTOCOL_VERSION, machineKey: a.machine.publicKey, nonce: 'x', signature: 'y', endpoints: [], admin: true }), 'invalid_input', /admin.*not a known field/],
    [JSON.stringify({ type: 'hello', version: PROTOCOL_VERSION, machineKey: 'short', nonce: 'x', signature: 'y', endpoints: [] }), 'invalid_input', /machineKey/],
    [JSON.stringify({ type: 'subscribe' }), 'invalid_input', /type: "subscribe" is not a message a node may send/],
    [JSON.stringify({ type: 'hello', version: PROTOCOL_VERSION, machineKey: a.machine.publicKey, nonce: 'not-the-challenge', signature: 'y', endpoints: [] }), 'bad_nonce', /different nonce/]
  ]
  for (const [text, code, why] of cases) {
    const r = await refused(connectClient(srv.url, a, { rawHello: text }))
    t.equal(r.error, code, `${text.slice(0, 40)} -> ${code}`)
    t.match(r.message, why)
    t.ok(r.code >= 4400 && r.code < 4500, `closed with ${r.code}`)
  }
  t.notOk(srv.source.getNode(a.node.id)!.online, 'nothing changed')
})

t.test('after hello, a second hello or a malformed message ends the session', async t => {
  const srv = await startMapTestServer()
  t.teardown(srv.close)
  const a = srv.add({ name: 'alpha' })
  const c = connectClient(srv.url, a)
  await waitUntil(() => c.netmap !== undefined, 'map')
  c.send(JSON.stringify({ type: 'endpoints', endpoints: [], extra: 1 }))
  const r = await refused(c)
  t.equal(r.code, 4400)
  t.equal(r.error, 'invalid_input')
  t.match(r.message, /extra.*not a known field/)
})

t.test('oversized and binary messages are refused', async t => {
  const srv = await startMapTestServer({ maxPayload: 4096 })
  t.teardown(srv.close)
  const ws = new WebSocket(srv.url)
  ws.on('error', () => {})
  await new Promise(resolve => ws.once('message', resolve))
  ws.send('x'.repeat(10_000))
  const code = await new Promise<number>(resolve => ws.on('close', c => resolve(c)))
  t.equal(code, 1009, 'message too big')

  const a = srv.add({ name: 'alpha' })
  const c = connectClient(srv.url, a, { noHello: true })
  await waitUntil(() => c.messages.length > 0, 'challenge')
  c.ws.send(Buffer.from('{}'))
  const r = await refused(c)
  t.equal(r.error, 'invalid_json')
  t.match(r.message, /JSON text frames, not binary/)
})

t.test('a socket that never says hello is closed', async t => {
  const srv = await startMapTestServer({ helloTimeoutMs: 100 })
  t.teardown(srv.close)
  const r = await refused(connectClient(srv.url, makeNode(), { noHello: true }))
  t.equal(r.code, 4408)
  t.equal(r.error, 'hello_timeout')
})

t.test('other paths are not the map endpoint', async t => {
  const srv = await startMapTestServer()
  t.teardown(srv.close)
  const ws = new WebSocket(srv.url.replace('/v1/machine/map', '/v1/other'))
  const err = await new Promise<Error>(resolve => ws.on('error', resolve))
  t.match(err.message, /404/)
})
