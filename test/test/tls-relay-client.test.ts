import t from 'tap'
import { createServer, request } from 'node:http'
import { createSocket, type Socket } from 'node:dgram'
import type { AddressInfo } from 'node:net'
import type { Duplex } from 'node:stream'
import WebSocket from 'ws'
import { WarrenError, generateMachineKeyPair, generateWireGuardKeyPair, type Node, type MachineKeyPair } from '@warren/protocol'
import { map, createTlsRelay, type TlsRelay } from '@warren/controller'
import { createFakeNodeSource, createFakeMapPolicy } from '@warren/controller/testing'
import { createTlsRelayClient, enableUdpOffload, type TlsRelayCarrier } from '@warren/node'
import { createFakeTlsRelayClient } from '@warren/node/testing'
import { waitFor } from '../src/index.js'

/**
 * The node's TLS relay client against the controller's relay, in-process over plain
 * HTTP: loopback endpoints per peer, both carriers, the fallback to WebSocket when the
 * stream upgrade is refused, and reconnecting after the relay drops the connection.
 * Stand-in WireGuards are UDP sockets on 127.0.0.1.
 */

interface Side { node: Node, machine: MachineKeyPair, wg: Socket, got: Array<{ data: string, port: number }> }

interface TestRelay { relay: TlsRelay, port: number }

async function startRelay (t: { teardown: (fn: () => unknown) => void }): Promise<TestRelay & { side: () => Promise<Side>, another: () => Promise<TestRelay> }> {
  const source = createFakeNodeSource([])
  const service = map.createMapService({ source, policy: createFakeMapPolicy(), domain: 'warren.internal' })
  t.teardown(async () => { await service.close() })
  /** serve runs a relay on a server of its own, judging by the same nodes and mesh */
  const serve = async (): Promise<TestRelay> => {
    const server = createServer((_req, res) => { res.statusCode = 404; res.end() })
    const relay = createTlsRelay({ nodeByMachineKey: k => source.nodeByMachineKey(k), getNode: id => source.getNode(id), peers: service.mesh, events: source.events })
    relay.attach(server)
    const stop = service.onMeshChange(ids => relay.meshChanged(ids))
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    t.teardown(async () => {
      stop()
      await relay.close()
      server.closeAllConnections()
      await new Promise(resolve => server.close(resolve))
    })
    return { relay, port: (server.address() as AddressInfo).port }
  }
  const { relay, port } = await serve()
  let n = 0
  const side = async (): Promise<Side> => {
    const machine = generateMachineKeyPair()
    const i = ++n
    const node: Node = {
      id: `relaynode${i}`, name: `r${i}`, fqdn: `r${i}.warren.internal`, tags: [], machineKey: machine.publicKey,
      wgKey: generateWireGuardKeyPair().publicKey, ipv4: `100.64.9.${i}`, ipv6: `fd7a:115c:a1e0::9:${i}`,
      status: 'active', ephemeral: false, online: false, created: new Date().toISOString(), endpoints: []
    }
    source.put(node)
    const wg = createSocket('udp4')
    await new Promise<void>(resolve => wg.bind(0, '127.0.0.1', resolve))
    t.teardown(() => { wg.close() })
    const s: Side = { node, machine, wg, got: [] }
    wg.on('message', (msg, rinfo) => s.got.push({ data: msg.toString('latin1'), port: rinfo.port }))
    return s
  }
  return { relay, port, side, another: serve }
}

/** plainTransport reaches the relay over plain HTTP; `refuseStream` plays a proxy that passes only WebSocket. */
function plainTransport (port: number, opts: { refuseStream?: boolean } = {}): { upgrade: (path: string, protocol: string) => Promise<Duplex>, webSocket: (path: string) => WebSocket } {
  return {
    async upgrade (path, protocol) {
      if (opts.refuseStream === true) throw new WarrenError('upgrade_refused', 'the proxy refused the upgrade (HTTP 400)', { status: 400 })
      return await new Promise((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port, path, headers: { Connection: 'Upgrade', Upgrade: protocol } })
        req.on('upgrade', (_res, socket, head) => {
          if (head.length > 0) socket.unshift(head)
          resolve(socket)
        })
        req.on('response', res => reject(new Error(`HTTP ${res.statusCode ?? '?'}`)))
        req.on('error', reject)
        req.end()
      })
    },
    webSocket: path => new WebSocket(`ws://127.0.0.1:${port}/${path}`)
  }
}

const portOf = (endpoint: string): number => Number(endpoint.split(':')[1])

for (const carrier of ['stream', 'websocket', 'auto'] as TlsRelayCarrier[]) {
  t.test(`${carrier}: WireGuard's packets to a peer's loopback endpoint come out at the peer's WireGuard`, async t => {
    const { port, side } = await startRelay(t)
    const [a, b] = [await side(), await side()]
    const transport = plainTransport(port, { refuseStream: carrier === 'auto' })
    const clientOf = (s: Side) => createTlsRelayClient({ transport, machineKey: s.machine, wgPort: (s.wg.address()).port, carrier, backoff: { minMs: 20, maxMs: 200 } })
    const ca = clientOf(a)
    const cb = clientOf(b)
    t.teardown(async () => { await ca.close(); await cb.close() })
    const epAtoB = await ca.endpoint(b.node.wgKey)
    const epBtoA = await cb.endpoint(a.node.wgKey)
    t.equal(await ca.endpoint(b.node.wgKey), epAtoB, 'the same endpoint again for the same peer')
    t.match(epAtoB, /^127\.0\.0\.1:\d+$/)
    await waitFor(() => ca.connected() && cb.connected(), { message: 'both connected', timeoutMs: 30_000 })
    t.equal(ca.stats().carrier, carrier === 'auto' ? 'websocket' : carrier)
    // WireGuard A sends to its endpoint for B; it leaves B's endpoint for A toward WireGuard B.
    await waitFor(() => {
      a.wg.send('hello b', portOf(epAtoB), '127.0.0.1')
      return b.got.length > 0
    }, { message: 'a packet from A at B', timeoutMs: 30_000 })
    t.same(b.got[0], { data: 'hello b', port: portOf(epBtoA) }, 'B sees A at its loopback endpoint for A')
    b.wg.send('hello a', portOf(epBtoA), '127.0.0.1')
    await waitFor(() => a.got.length > 0, { message: 'the answer at A' })
    t.same(a.got[0], { data: 'hello a', port: portOf(epAtoB) })
    t.ok(ca.stats().recvBufferBytes! > 0, 'the loopback sockets have sized buffers')
  })
}

t.test('a batch WireGuard sends with segmentation offload crosses the relay as one frame and arrives as its packets, in order', async t => {
  const { port, side, relay } = await startRelay(t)
  const [a, b] = [await side(), await side()]
  const ca = createTlsRelayClient({ transport: plainTransport(port), machineKey: a.machine, wgPort: a.wg.address().port })
  const cb = createTlsRelayClient({ transport: plainTransport(port), machineKey: b.machine, wgPort: b.wg.address().port })
  t.teardown(async () => { await ca.close(); await cb.close() })
  const epAtoB = await ca.endpoint(b.node.wgKey)
  await cb.endpoint(a.node.wgKey)
  await waitFor(() => ca.connected() && cb.connected(), { message: 'both connected', timeoutMs: 30_000 })
  t.same(ca.stats().offload, { gso: true, gro: true }, 'the loopback sockets took UDP offload')
  // WireGuard A sends 20 full-sized data packets and a short one in one send, as wireguard-go does with UDP_SEGMENT.
  await enableUdpOffload(a.wg, { segmentBytes: 1452 })
  const packet = (n: number, size: number): Buffer => {
    const p = Buffer.alloc(size, n)
    p.writeUInt32LE(4, 0)
    p.writeUInt32LE(0x1234, 4)
    p.writeBigUInt64LE(BigInt(n), 8)
    return p
  }
  const sent = [...Array.from({ length: 20 }, (_, i) => packet(i + 1, 1452)), packet(21, 300)]
  const framesBefore = relay.stats().framesIn
  b.got.length = 0
  a.wg.send(Buffer.concat(sent), portOf(epAtoB), '127.0.0.1')
  await waitFor(() => b.got.length >= sent.length, { message: 'all 21 packets at B', timeoutMs: 30_000 })
  t.same(b.got.map(g => g.data.length), sent.map(p => p.length), 'each packet whole')
  t.same(b.got.map(g => Buffer.from(g.data, 'latin1').readBigUInt64LE(8)), sent.map((_, i) => BigInt(i + 1)), 'in order')
  t.equal(relay.stats().framesIn - framesBefore, 1, 'one BATCH frame through the relay')
  t.ok(cb.stats().loopbackSends < sent.length, `B handed them to WireGuard in fewer sends (${cb.stats().loopbackSends})`)
})

t.test('only WireGuard may send to a loopback endpoint; unknown senders and released peers carry nothing', async t => {
  const { port, side } = await startRelay(t)
  const [a, b] = [await side(), await side()]
  const heard: string[] = []
  const ca = createTlsRelayClient({ transport: plainTransport(port), machineKey: a.machine, wgPort: a.wg.address().port })
  const cb = createTlsRelayClient({ transport: plainTransport(port), machineKey: b.machine, wgPort: b.wg.address().port, onUnknownPeer: k => heard.push(k) })
  t.teardown(async () => { await ca.close(); await cb.close() })
  const ep = await ca.endpoint(b.node.wgKey)
  await waitFor(() => ca.connected() && cb.connected(), { message: 'both connected', timeoutMs: 30_000 })
  // B has no endpoint for A yet: B's client drops A's packets and says so once.
  await waitFor(() => {
    a.wg.send('early', portOf(ep), '127.0.0.1')
    return heard.length > 0
  }, { message: 'B hears of an unknown peer' })
  t.same(heard, [a.node.wgKey])
  t.equal(b.got.length, 0)
  await cb.endpoint(a.node.wgKey)
  // Another local socket sends to A's endpoint: the socket is connected to WireGuard's
  // port, so the kernel never hands it over; what WireGuard sends after it arrives alone.
  const stranger = createSocket('udp4')
  t.teardown(() => { stranger.close() })
  await new Promise<void>(resolve => stranger.bind(0, '127.0.0.1', resolve))
  stranger.send('not from wireguard', portOf(ep), '127.0.0.1')
  await waitFor(() => {
    a.wg.send('marker', portOf(ep), '127.0.0.1')
    return b.got.some(g => g.data === 'marker')
  }, { message: 'the marker at B' })
  t.notOk(b.got.some(g => g.data === 'not from wireguard'), 'the stranger\'s packet was not relayed')
  ca.release(b.node.wgKey)
  await t.rejects(ca.endpoint('not a key'), { code: 'bad_key' })
})

t.test('the client reconnects after the relay drops it, and traffic resumes', async t => {
  const { port, side, relay } = await startRelay(t)
  const [a, b] = [await side(), await side()]
  const states: boolean[] = []
  const ca = createTlsRelayClient({ transport: plainTransport(port), machineKey: a.machine, wgPort: a.wg.address().port, backoff: { minMs: 20, maxMs: 100 }, onState: up => states.push(up) })
  const cb = createTlsRelayClient({ transport: plainTransport(port), machineKey: b.machine, wgPort: b.wg.address().port, backoff: { minMs: 20, maxMs: 100 } })
  t.teardown(async () => { await ca.close(); await cb.close() })
  const heard: boolean[] = []
  ca.onStateChange(up => heard.push(up))
  const ep = await ca.endpoint(b.node.wgKey)
  await cb.endpoint(a.node.wgKey)
  await waitFor(() => ca.connected() && cb.connected(), { message: 'both connected', timeoutMs: 30_000 })
  // A second connection for the same node replaces the first, as a restarted daemon's would.
  // (It never comes back once replaced in turn: a long backoff.)
  const again = createTlsRelayClient({ transport: plainTransport(port), machineKey: a.machine, wgPort: a.wg.address().port, backoff: { minMs: 600_000 } })
  await waitFor(() => states.includes(false), { message: 'A replaced by the second connection' })
  await again.close()
  await waitFor(() => ca.connected() && states.at(-1) === true, { message: `A reconnected (states ${states.join()})`, timeoutMs: 30_000 })
  await waitFor(() => {
    a.wg.send('after', portOf(ep), '127.0.0.1')
    return b.got.some(g => g.data === 'after')
  }, { message: 'traffic after the reconnect', timeoutMs: 30_000 })
  t.equal(relay.stats().links, 2)
  t.same(states.slice(0, 2), [true, false], 'A heard it went down, then up again')
  t.same(heard, states, 'onStateChange hears the same as the onState hook (the path manager listens there)')
})

t.test('retargeted to another relay, the clients keep their loopback endpoints and traffic resumes there', async t => {
  const { port, side, relay, another } = await startRelay(t)
  const second = await another()
  const [a, b] = [await side(), await side()]
  const ca = createTlsRelayClient({ transport: plainTransport(port), machineKey: a.machine, wgPort: a.wg.address().port, backoff: { minMs: 20, maxMs: 100 } })
  const cb = createTlsRelayClient({ transport: plainTransport(port), machineKey: b.machine, wgPort: b.wg.address().port, backoff: { minMs: 20, maxMs: 100 } })
  t.teardown(async () => { await ca.close(); await cb.close() })
  const ep = await ca.endpoint(b.node.wgKey)
  const back = await cb.endpoint(a.node.wgKey)
  await waitFor(() => ca.connected() && cb.connected(), { message: 'both connected', timeoutMs: 30_000 })
  ca.retarget(plainTransport(second.port))
  cb.retarget(plainTransport(second.port))
  await waitFor(() => second.relay.stats().links === 2 && ca.connected() && cb.connected(), { message: 'both on the second relay', timeoutMs: 30_000 })
  t.equal(relay.stats().links, 0, 'neither is left on the first relay')
  t.equal(await ca.endpoint(b.node.wgKey), ep, 'WireGuard\'s endpoint for the peer did not move')
  await waitFor(() => {
    a.wg.send('moved', portOf(ep), '127.0.0.1')
    return b.got.some(g => g.data === 'moved')
  }, { message: 'traffic through the second relay', timeoutMs: 30_000 })
  t.equal(b.got.find(g => g.data === 'moved')?.port, portOf(back), 'B still sees A at its loopback endpoint for A')
  t.ok(second.relay.stats().framesOut > 0, 'the second relay carried it')
})

t.test('the fake hands out stable loopback endpoints and records releases', async t => {
  const f = createFakeTlsRelayClient()
  const ep = await f.endpoint('k1')
  t.equal(await f.endpoint('k1'), ep)
  t.not(await f.endpoint('k2'), ep)
  f.release('k1')
  t.same(f.released, ['k1'])
  f.setConnected(false)
  t.notOk(f.connected())
  await f.close()
  t.ok(f.closed)
})
