import t from 'tap'
import { request } from 'node:http'
import type { AddressInfo } from 'node:net'
import { TLS_RELAY_PATH, RelayFrameType, encodeRelayPeer, decodeRelayControlText, fromBase64, generateMachineKeyPair } from '@warren/protocol'
import { createRelayLink } from '@warren/sdk/transport'
import { connectRelayTestClient, openRelayStream } from '@warren/relay/testing'
import { createTlsRelay, type TlsRelay, type TlsRelayOptions } from '../src/tls-relay/index.js'
import { startWith, waitUntil, type MapTestServer, type TestNode } from './map-harness.js'

/**
 * The TLS relay, in-process over plain HTTP (the carrier is the same byte stream once
 * upgraded): authentication with the machine key, forwarding only between peers the
 * policy lets talk, cutting at once on revocation, and the per-node limits.
 */

async function startRelay (t: { teardown: (fn: () => Promise<void>) => void }, names: string[], opts: TlsRelayOptions = {}): Promise<{ srv: MapTestServer, relay: TlsRelay, nodes: TestNode[], port: number }> {
  // Nodes that share a tag see each other; untagged nodes see all untagged ones.
  const { srv, nodes } = await startWith(t, names)
  const relay = createTlsRelay({
    nodeByMachineKey: k => srv.source.nodeByMachineKey(k),
    getNode: id => srv.source.getNode(id),
    peers: srv.service.mesh,
    events: srv.source.events
  }, opts)
  relay.attach(srv.server)
  const stop = srv.service.onMeshChange(ids => relay.meshChanged(ids))
  t.teardown(async () => { stop(); await relay.close() })
  return { srv, relay, nodes, port: (srv.server.address() as AddressInfo).port }
}

const pkt = (n: number, fill: number): Uint8Array => new Uint8Array(n).fill(fill)

for (const websocket of [false, true]) {
  t.test(`${websocket ? 'WebSocket' : 'framed stream'}: a packet goes from a node to its peer, announced by key`, async t => {
    const { nodes, port, relay } = await startRelay(t, ['a', 'b'])
    const [a, b] = [await connectRelayTestClient(port, nodes[0]!.machine, { websocket }), await connectRelayTestClient(port, nodes[1]!.machine, { websocket })]
    await Promise.all([a.welcomed, b.welcomed])
    a.send(3, nodes[1]!.node.wgKey, pkt(148, 7))
    a.send(3, nodes[1]!.node.wgKey, pkt(1400, 8))
    b.send(9, nodes[0]!.node.wgKey, pkt(92, 9))
    await waitUntil(() => b.got.length === 2 && a.got.length === 1, 'both packets relayed')
    t.same(b.got.map(g => [g.from, g.packet.length, g.packet[0]]), [[nodes[0]!.node.wgKey, 148, 7], [nodes[0]!.node.wgKey, 1400, 8]])
    t.same(a.got.map(g => [g.from, g.packet.length]), [[nodes[1]!.node.wgKey, 92]])
    t.equal(relay.stats().links, 2)
    a.link.close()
    b.link.close()
  })
}

t.test('a BATCH frame reaches a peer that takes batches whole, and one that does not as DATA frames', async t => {
  const { nodes, port, relay } = await startRelay(t, ['a', 'b', 'c'])
  const a = await connectRelayTestClient(port, nodes[0]!.machine, { batch: true })
  const b = await connectRelayTestClient(port, nodes[1]!.machine, { batch: true })
  const c = await connectRelayTestClient(port, nodes[2]!.machine)
  await Promise.all([a.welcomed, b.welcomed, c.welcomed])
  const packets = new Uint8Array([...pkt(1400, 1), ...pkt(1400, 2), ...pkt(300, 3)])
  a.sendBatch(1, nodes[1]!.node.wgKey, 1400, packets)
  a.sendBatch(2, nodes[2]!.node.wgKey, 1400, packets)
  await waitUntil(() => b.got.length === 1 && c.got.length === 3, 'the batch relayed to both')
  t.same(b.got.map(g => [g.from, g.batchSize, g.packet.length]), [[nodes[0]!.node.wgKey, 1400, 3100]], 'one BATCH frame, the bytes unchanged')
  t.same(b.got[0]!.packet, [...packets])
  t.same(c.got.map(g => [g.from, g.batchSize, g.packet.length, g.packet[0]]), [[nodes[0]!.node.wgKey, undefined, 1400, 1], [nodes[0]!.node.wgKey, undefined, 1400, 2], [nodes[0]!.node.wgKey, undefined, 300, 3]], 'split into its packets')
  t.equal(relay.stats().bytesIn, 2 * packets.length)
})

t.test('a BATCH of packets larger than the relay takes is refused', async t => {
  const { nodes, port } = await startRelay(t, ['a', 'b'], { maxPacket: 1500 })
  const a = await connectRelayTestClient(port, nodes[0]!.machine, { batch: true })
  await a.welcomed
  a.sendBatch(1, nodes[1]!.node.wgKey, 1600, pkt(3200, 1))
  await a.closed
  t.match(a.errors, [{ code: 'bad_relay_frame', message: /1600-byte packets; packets must be 1\.\.1500 bytes/ }])
})

t.test('a node cannot send to a peer the policy hides, nor to an offline one', async t => {
  const { srv, nodes, port, relay } = await startRelay(t, ['a', 'b', 'c'])
  // a and b share a tag; c is in another group, so a and c are not peers
  srv.source.put({ ...nodes[0]!.node, tags: ['tag:x'] })
  srv.source.put({ ...nodes[1]!.node, tags: ['tag:x'] })
  srv.source.put({ ...nodes[2]!.node, tags: ['tag:y'] })
  const [a, c] = [await connectRelayTestClient(port, nodes[0]!.machine), await connectRelayTestClient(port, nodes[2]!.machine)]
  await Promise.all([a.welcomed, c.welcomed])
  a.send(1, nodes[2]!.node.wgKey, pkt(100, 1))
  a.send(2, nodes[1]!.node.wgKey, pkt(100, 2)) // b is a peer but not connected
  c.send(1, nodes[0]!.node.wgKey, pkt(100, 3))
  await waitUntil(() => relay.stats().dropped.denied === 2 && relay.stats().dropped.offline === 1, 'drops counted')
  t.equal(c.got.length, 0)
  t.equal(a.got.length, 0)
  t.equal(relay.stats().framesOut, 0)
  t.notOk(a.isClosed(), 'a hidden peer is a drop, not an error')
})

t.test('revocation cuts a pair at the next frame, and removal cuts the node at once', async t => {
  const { srv, nodes, port, relay } = await startRelay(t, ['a', 'b'])
  const [a, b] = [await connectRelayTestClient(port, nodes[0]!.machine), await connectRelayTestClient(port, nodes[1]!.machine)]
  await Promise.all([a.welcomed, b.welcomed])
  a.send(1, nodes[1]!.node.wgKey, pkt(60, 1))
  await waitUntil(() => b.got.length === 1, 'first packet relayed')
  // The policy stops letting a and b talk: b moves to another group.
  srv.source.put({ ...nodes[1]!.node, tags: ['tag:other'] })
  a.send(1, nodes[1]!.node.wgKey, pkt(60, 2))
  await waitUntil(() => relay.stats().dropped.denied === 1, 'the next packet is denied')
  t.equal(b.got.length, 1, 'nothing more reached b')
  // And back: the pair is judged again.
  srv.source.put({ ...nodes[1]!.node, tags: [] })
  a.send(1, nodes[1]!.node.wgKey, pkt(60, 3))
  await waitUntil(() => b.got.length === 2, 'allowed again')
  // Deleting a node closes its relay connection with the reason.
  srv.source.remove(nodes[0]!.node.id)
  await a.closed
  t.same(a.errors.map(e => e.code), ['node_deleted'])
  t.equal(relay.stats().links, 1)
})

t.test('frames break the rules: an index no PEER frame named, an oversize packet', async t => {
  const { nodes, port } = await startRelay(t, ['a', 'b'], { maxPacket: 1500 })
  const a = await connectRelayTestClient(port, nodes[0]!.machine)
  await a.welcomed
  a.link.sendData(5, pkt(10, 1))
  await a.closed
  t.match(a.errors, [{ code: 'unknown_peer_index', message: /peer index 5.*PEER frame/ }])
  const b = await connectRelayTestClient(port, nodes[1]!.machine)
  await b.welcomed
  b.send(1, nodes[0]!.node.wgKey, pkt(1600, 1))
  await b.closed
  t.match(b.errors, [{ code: 'bad_relay_frame', message: /1600-byte packet; this relay takes at most 1500/ }])
})

t.test('only registered nodes that sign the challenge with their own key are let in', async t => {
  const { nodes, port, relay } = await startRelay(t, ['a'])
  const forged = await connectRelayTestClient(port, nodes[0]!.machine, { signWith: generateMachineKeyPair() })
  await forged.closed
  t.match(forged.errors, [{ code: 'bad_signature' }])
  const stranger = await connectRelayTestClient(port, generateMachineKeyPair())
  await stranger.closed
  t.match(stranger.errors, [{ code: 'unknown_node' }])
  // Frames before the hello are refused.
  const early = await openRelayStream(port)
  const errors: string[] = []
  await new Promise<void>(resolve => {
    const l = createRelayLink(early, {
      onFrame (type, body) { if (type === RelayFrameType.Control) errors.push(decodeRelayControlText(body)) },
      onClose: () => resolve()
    })
    l.sendFrame(encodeRelayPeer(1, fromBase64(nodes[0]!.node.wgKey, 32)!))
  })
  t.match(errors.join('\n'), /"code":"unauthenticated"/)
  t.equal(relay.stats().links, 0)
})

t.test('a node over its rate has its packets dropped', async t => {
  const { nodes, port, relay } = await startRelay(t, ['a', 'b'], { rateBytesPerSecond: 1000, burstBytes: 1000 })
  const [a, b] = [await connectRelayTestClient(port, nodes[0]!.machine), await connectRelayTestClient(port, nodes[1]!.machine)]
  await Promise.all([a.welcomed, b.welcomed])
  for (let i = 0; i < 5; i++) a.send(1, nodes[1]!.node.wgKey, pkt(400, i))
  await waitUntil(() => relay.stats().framesIn === 5, 'all five read')
  t.ok(relay.stats().dropped.rate >= 2, `over the burst is dropped (${relay.stats().dropped.rate})`)
  await waitUntil(() => b.got.length === 5 - relay.stats().dropped.rate, 'the rest relayed')
})

t.test('a wrong upgrade on the relay path is refused in the API error shape', async t => {
  const { port } = await startRelay(t, [])
  const answer = await new Promise<{ status: number, body: string }>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: TLS_RELAY_PATH, headers: { Connection: 'Upgrade', Upgrade: 'h2c' } })
    req.on('response', res => {
      let body = ''
      res.on('data', c => { body += String(c) })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on('upgrade', () => reject(new Error('upgraded')))
    req.on('error', reject)
    req.end()
  })
  t.equal(answer.status, 400)
  t.match(answer.body, /warren-relay\/1/)
})
