import t from 'tap'
import { WebSocketServer, WebSocket } from 'ws'
import type { AddressInfo } from 'node:net'
import {
  generateMachineKeyPair, generateWireGuardKeyPair, verifyMessage, mapSigningPayload, MAP_DOMAIN, PROTOCOL_VERSION,
  type Netmap, type Peer, type MapHello, type ServerMessage
} from '@warren/protocol'
import { createMapSession, type NetmapUpdate, type MapSession } from '../src/control/map-session.js'
import { createBackoff } from '../src/control/backoff.js'
import { until } from './daemon-fake-controller.js'

function peer (n: number): Peer {
  return {
    id: `n${n}`, name: `peer${n}`, fqdn: `peer${n}.warren.internal`, tags: [],
    wgKey: generateWireGuardKeyPair().publicKey, ipv4: `100.64.0.${n}`, ipv6: `fd7a:115c:a1e0:ab12::${n}`,
    endpoints: [], online: true
  }
}

function netmap (peers: Peer[]): Netmap {
  const self = peer(1)
  return {
    self: { ...self, machineKey: self.wgKey, status: 'active', ephemeral: false, created: new Date(0).toISOString() },
    peers, filter: [], dns: { domain: 'warren.internal', magicDns: true }
  }
}

/** FakeMapServer scripts a controller's map endpoint: each connection's hello goes to `onHello`. */
async function fakeMapServer (t: { teardown(fn: () => void): void }, onHello: (ws: WebSocket, hello: MapHello, conn: number) => void, opts: { autoPong?: boolean, version?: number } = {}) {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, autoPong: opts.autoPong ?? true })
  await new Promise(resolve => wss.once('listening', resolve))
  const hellos: MapHello[] = []
  const others: unknown[] = []
  let conns = 0
  wss.on('connection', ws => {
    const conn = ++conns
    const nonce = `nonce${conn}`
    ws.send(JSON.stringify({ type: 'challenge', version: opts.version ?? PROTOCOL_VERSION, nonce } satisfies ServerMessage))
    ws.on('message', data => {
      const m = JSON.parse(data.toString())
      if (m.type === 'hello') {
        hellos.push(m)
        onHello(ws, m, conn)
      } else others.push(m)
    })
  })
  t.teardown(() => { for (const c of wss.clients) c.terminate(); wss.close() })
  const port = (wss.address() as AddressInfo).port
  return { wss, hellos, others, connections: () => conns, open: () => new WebSocket(`ws://127.0.0.1:${port}/v1/machine/map`) }
}

const send = (ws: WebSocket, m: ServerMessage): void => ws.send(JSON.stringify(m))

function collect (s: MapSession): NetmapUpdate[] {
  const got: NetmapUpdate[] = []
  s.on('netmap', (u: NetmapUpdate) => got.push(u))
  return got
}

const fastBackoff = () => createBackoff({ minMs: 10, maxMs: 40 })

t.test('an older controller gets a hello in its own version, signed over that version', async t => {
  const mk = generateMachineKeyPair()
  const srv = await fakeMapServer(t, ws => { send(ws, { type: 'map', session: 's1', seq: 1, netmap: netmap([]) }) }, { version: 1 })
  const s = createMapSession({ openSocket: srv.open, machineKey: mk, endpoints: () => [], backoff: fastBackoff() })
  t.teardown(() => s.close())
  const got = collect(s)
  await until('the map', () => got.length === 1)
  t.equal(srv.hellos[0]!.version, 1)
  t.ok(verifyMessage(mk.publicKey, MAP_DOMAIN, mapSigningPayload('nonce1', mk.publicKey, 1), srv.hellos[0]!.signature))
})

t.test('full map, then deltas applied to a new netmap each time', async t => {
  const mk = generateMachineKeyPair()
  const base = netmap([peer(2), peer(3)])
  const srv = await fakeMapServer(t, ws => {
    send(ws, { type: 'map', session: 's1', seq: 5, netmap: base })
    send(ws, { type: 'delta', seq: 6, peersChanged: [peer(4)] })
    send(ws, { type: 'delta', seq: 7, peersRemoved: ['n2'], dns: { domain: 'corp.internal', magicDns: true } })
  })
  const s = createMapSession({ openSocket: srv.open, machineKey: mk, endpoints: () => ['192.0.2.1:41641'], backoff: fastBackoff() })
  t.teardown(() => s.close())
  const got = collect(s)
  await until('three maps', () => got.length === 3)
  t.same(got.map(u => [u.full, u.seq]), [[true, 5], [false, 6], [false, 7]])
  t.same(got[2]!.netmap.peers.map(p => p.id).sort(), ['n3', 'n4'], 'peer added then removed')
  t.equal(got[2]!.netmap.dns.domain, 'corp.internal')
  t.same(got[0]!.netmap.peers.map(p => p.id), ['n2', 'n3'], 'earlier netmaps are not changed by later deltas')
  t.equal(s.state, 'connected')

  const hello = srv.hellos[0]!
  t.ok(verifyMessage(mk.publicKey, MAP_DOMAIN, mapSigningPayload('nonce1', mk.publicKey, PROTOCOL_VERSION), hello.signature), 'hello is signed over the challenge with the machine key')
  t.same(hello.endpoints, ['192.0.2.1:41641'])
  t.equal(hello.resume, undefined, 'a fresh session asks for a full map')
})

t.test('a sequence gap drops the connection and asks for a full map', async t => {
  const mk = generateMachineKeyPair()
  const srv = await fakeMapServer(t, (ws, _hello, conn) => {
    if (conn === 1) {
      send(ws, { type: 'map', session: 's1', seq: 1, netmap: netmap([peer(2)]) })
      send(ws, { type: 'delta', seq: 3, peersChanged: [peer(9)] })
    } else {
      send(ws, { type: 'map', session: 's2', seq: 10, netmap: netmap([peer(2), peer(3)]) })
    }
  })
  const s = createMapSession({ openSocket: srv.open, machineKey: mk, endpoints: () => [], backoff: fastBackoff() })
  t.teardown(() => s.close())
  const got = collect(s)
  await until('the resync map', () => got.length === 2)
  t.same(got.map(u => [u.full, u.seq]), [[true, 1], [true, 10]], 'the delta after the gap was never applied')
  t.notOk(got.some(u => u.netmap.peers.some(p => p.id === 'n9')))
  t.equal(srv.hellos[1]!.resume, undefined, 'the reconnect after a gap asks for a full map, not a resume')
  t.same(s.position?.seq, 10)
})

t.test('reconnects after the controller drops, resuming from the last seq', async t => {
  const mk = generateMachineKeyPair()
  const srv = await fakeMapServer(t, (ws, hello, conn) => {
    if (conn === 1) {
      send(ws, { type: 'map', session: 'sess-a', seq: 3, netmap: netmap([peer(2)]) })
      send(ws, { type: 'delta', seq: 4, peersChanged: [peer(3)] })
      setTimeout(() => ws.terminate(), 20)
    } else if (hello.resume?.session === 'sess-a' && hello.resume.seq === 4) {
      send(ws, { type: 'delta', seq: 5, peersRemoved: ['n2'] })
    } else {
      send(ws, { type: 'error', code: 'test_failed', message: 'bad resume' })
    }
  })
  const s = createMapSession({ openSocket: srv.open, machineKey: mk, endpoints: () => [], backoff: fastBackoff() })
  t.teardown(() => s.close())
  const states: string[] = []
  s.on('state', (st: string) => states.push(st))
  const got = collect(s)
  await until('the resumed delta', () => got.length === 3)
  t.same(srv.hellos[1]!.resume, { session: 'sess-a', seq: 4 })
  t.same(got[2]!.netmap.peers.map(p => p.id), ['n3'], 'the resumed delta applies on top of the kept map')
  t.ok(states.includes('disconnected'), 'the drop was seen')
  t.equal(s.state, 'connected')
})

t.test('resumes from a position saved by an earlier run', async t => {
  const mk = generateMachineKeyPair()
  const srv = await fakeMapServer(t, ws => { send(ws, { type: 'delta', seq: 8, peersChanged: [peer(5)] }) })
  const s = createMapSession({
    openSocket: srv.open, machineKey: mk, endpoints: () => [], backoff: fastBackoff(),
    resumeFrom: { session: 'old', seq: 7, netmap: netmap([peer(2)]) }
  })
  t.teardown(() => s.close())
  const got = collect(s)
  await until('a delta', () => got.length === 1)
  t.same(srv.hellos[0]!.resume, { session: 'old', seq: 7 })
  t.same(got[0]!.netmap.peers.map(p => p.id).sort(), ['n2', 'n5'])
})

t.test('keeps retrying while the controller is down, then connects', async t => {
  const mk = generateMachineKeyPair()
  let refuse = true
  const srv = await fakeMapServer(t, ws => {
    if (refuse) ws.terminate()
    else send(ws, { type: 'map', session: 's', seq: 0, netmap: netmap([]) })
  })
  const s = createMapSession({ openSocket: srv.open, machineKey: mk, endpoints: () => [], backoff: fastBackoff() })
  t.teardown(() => s.close())
  const got = collect(s)
  await until('three refused attempts', () => srv.connections() >= 3)
  t.equal(got.length, 0)
  refuse = false
  await until('the map', () => got.length === 1)
  t.equal(s.state, 'connected')
})

t.test('a silent controller is dropped by the keepalive and reconnected', async t => {
  const mk = generateMachineKeyPair()
  // A server that never answers pings: as if the controller host vanished without a FIN.
  const srv = await fakeMapServer(t, (ws, _h, conn) => {
    send(ws, { type: 'map', session: 's', seq: conn, netmap: netmap([]) })
  }, { autoPong: false })
  const s = createMapSession({ openSocket: srv.open, machineKey: mk, endpoints: () => [], backoff: fastBackoff(), keepaliveMs: 30 })
  t.teardown(() => s.close())
  await until('a second connection', () => srv.connections() >= 2)
  t.pass('reconnected after the keepalive gave up')
})

t.test('sends endpoints when they change, and only then', async t => {
  const mk = generateMachineKeyPair()
  let eps = ['192.0.2.1:41641']
  const srv = await fakeMapServer(t, ws => { send(ws, { type: 'map', session: 's', seq: 0, netmap: netmap([]) }) })
  const s = createMapSession({ openSocket: srv.open, machineKey: mk, endpoints: () => eps, backoff: fastBackoff() })
  t.teardown(() => s.close())
  await until('connected', () => s.state === 'connected')
  s.checkEndpoints()
  eps = ['192.0.2.1:41641', '198.51.100.7:41641']
  s.checkEndpoints()
  s.checkEndpoints()
  await until('an endpoints message', () => srv.others.length >= 1)
  await new Promise(resolve => setTimeout(resolve, 30))
  t.same(srv.others, [{ type: 'endpoints', endpoints: eps }])
})

t.test('call-me-maybe goes out while connected, and a peer\'s call comes in as an event', async t => {
  const mk = generateMachineKeyPair()
  const caller = peer(2)
  let server: WebSocket | undefined
  const srv = await fakeMapServer(t, ws => { server = ws; send(ws, { type: 'map', session: 's', seq: 0, netmap: netmap([caller]) }) })
  const s = createMapSession({ openSocket: srv.open, machineKey: mk, endpoints: () => [], backoff: fastBackoff() })
  t.teardown(() => s.close())
  t.equal(s.sendCallMeMaybe(caller.wgKey), false, 'not sent before the session is up')
  await until('connected', () => s.state === 'connected')
  const heard = new Promise(resolve => s.once('call-me-maybe', resolve))
  send(server!, { type: 'call-me-maybe', peer: caller.wgKey, peerId: caller.id })
  t.same(await heard, { type: 'call-me-maybe', peer: caller.wgKey, peerId: caller.id })
  t.equal(s.sendCallMeMaybe(caller.wgKey), true)
  await until('the call at the controller', () => srv.others.length >= 1)
  t.same(srv.others, [{ type: 'call-me-maybe', peer: caller.wgKey }])
})

t.test('controller errors are reported', async t => {
  const mk = generateMachineKeyPair()
  const srv = await fakeMapServer(t, ws => { send(ws, { type: 'error', code: 'node_not_found', message: 'this node was deleted' }); ws.close() })
  const s = createMapSession({ openSocket: srv.open, machineKey: mk, endpoints: () => [], backoff: fastBackoff() })
  t.teardown(() => s.close())
  const err = await new Promise<Error & { code: string }>(resolve => s.once('server-error', resolve))
  t.equal(err.code, 'node_not_found')
  t.match(err.message, /deleted/)
})

t.test('backoff doubles with jitter up to the cap and resets', async t => {
  const lo = createBackoff({ minMs: 500, maxMs: 30_000, random: () => 0 })
  const hi = createBackoff({ minMs: 500, maxMs: 30_000, random: () => 1 })
  const los = Array.from({ length: 10 }, () => lo.next())
  const his = Array.from({ length: 10 }, () => hi.next())
  t.same(his.slice(0, 4), [500, 1000, 2000, 4000])
  t.same(los.slice(0, 4), [250, 500, 1000, 2000])
  t.equal(his[9], 30_000, 'capped at 30 s')
  hi.reset()
  t.equal(hi.next(), 500)
})
