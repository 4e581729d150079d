import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import WebSocket from 'ws'
import {
  PROTOCOL_VERSION, MAP_DOMAIN, signMessage, mapSigningPayload, applyDelta, validate, ServerMessage,
  type MachineKeyPair, type Node, type Netmap, type MapDelta, type MapError
} from '@warren/protocol'
import { createMapService, type MapService, type MapServiceOptions } from '../src/map/map-service.js'
import { createFakeNodeSource, createFakeMapPolicy, type FakeNodeSource } from '../src/testing.js'
import type { MapPolicy } from '../src/map/types.js'
import { makeNode, type TestNode } from './map-nodes.js'

/**
 * The map test harness: a map service on 127.0.0.1:0 over an in-memory node source, and
 * a WebSocket client that speaks the real protocol (signed hello, seq checks, deltas
 * applied with the protocol's applyDelta).
 */

export { makeNode, type TestNode } from './map-nodes.js'

export interface MapTestServer {
  url: string
  source: FakeNodeSource
  service: MapService
  server: Server
  /** add puts a new node into the source (as a registration would) */
  add: (change?: Partial<Node>) => TestNode
  close: () => Promise<void>
}

export async function startMapTestServer (opts: Partial<MapServiceOptions> & { policy?: MapPolicy, nodes?: Node[] } = {}): Promise<MapTestServer> {
  const source = createFakeNodeSource(opts.nodes ?? [])
  const service = createMapService({ domain: 'warren.internal', coalesceMs: 20, ...opts, source, policy: opts.policy ?? createFakeMapPolicy() })
  const server = createServer((_req, res) => { res.statusCode = 404; res.end() })
  service.attach(server)
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  return {
    url: `ws://127.0.0.1:${port}/v1/machine/map`,
    source,
    service,
    server,
    add (change = {}) {
      const t = makeNode(change)
      source.put(t.node)
      return t
    },
    async close () {
      await service.close()
      server.closeAllConnections()
      await new Promise<void>(resolve => server.close(() => resolve()))
    }
  }
}

/** startWith starts a server torn down with the test, holding active nodes with these names. */
export async function startWith (t: { teardown: (fn: () => Promise<void>) => void }, names: string[], opts: Parameters<typeof startMapTestServer>[0] = {}): Promise<{ srv: MapTestServer, nodes: TestNode[] }> {
  const srv = await startMapTestServer(opts)
  t.teardown(srv.close)
  return { srv, nodes: names.map(name => srv.add({ name })) }
}

export interface ConnectOptions {
  resume?: { session: string, seq: number }
  version?: number
  endpoints?: string[]
  /** posture attributes the hello reports (node:os, ...) */
  attrs?: Record<string, string>
  /** sign with this key instead of the node's own */
  signWith?: MachineKeyPair
  /** send this instead of a hello */
  rawHello?: string
  /** do not answer the challenge */
  noHello?: boolean
  /** TLS options for wss:// (tests against the real controller) */
  ws?: WebSocket.ClientOptions
}

export interface MapTestClient {
  ws: WebSocket
  /** every message received, parsed and checked against the wire schema */
  messages: Array<Record<string, unknown> & { type: string }>
  deltas: MapDelta[]
  netmap?: Netmap
  session?: string
  seq: number
  /** problems the client saw: a seq gap or a message that fails the schema */
  problems: string[]
  closed: Promise<{ code: number, reason: string }>
  isClosed: () => boolean
  lastError: () => MapError | undefined
  peerNames: () => string[]
  send: (text: string) => void
  close: () => Promise<void>
}

/** waitUntil polls a condition until it holds; the limit is generous so that a loaded machine only waits longer. */
export async function waitUntil (cond: () => boolean, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 5))
  }
}

export function connectClient (url: string, t: TestNode, opts: ConnectOptions = {}): MapTestClient {
  const ws = new WebSocket(url, opts.ws)
  let isClosed = false
  const c: MapTestClient = {
    ws,
    messages: [],
    deltas: [],
    seq: 0,
    problems: [],
    closed: new Promise(resolve => ws.on('close', (code, reason) => { isClosed = true; resolve({ code, reason: reason.toString() }) })),
    isClosed: () => isClosed,
    lastError: () => c.messages.filter(m => m.type === 'error').at(-1) as MapError | undefined,
    peerNames: () => (c.netmap?.peers ?? []).map(p => p.name).sort(),
    send: text => ws.send(text),
    async close () {
      if (isClosed) return
      ws.close()
      await c.closed
    }
  }
  ws.on('error', () => {})
  ws.on('message', data => {
    let msg: ServerMessage
    try {
      msg = validate(ServerMessage, JSON.parse(data.toString()), 'server message')
    } catch (err) {
      c.problems.push((err as Error).message)
      return
    }
    c.messages.push(msg as MapTestClient['messages'][number])
    if (msg.type === 'challenge') {
      if (opts.noHello === true) return
      if (opts.rawHello !== undefined) { ws.send(opts.rawHello); return }
      const version = opts.version ?? PROTOCOL_VERSION
      const signer = opts.signWith ?? t.machine
      const hello = {
        type: 'hello',
        version,
        machineKey: t.machine.publicKey,
        nonce: msg.nonce,
        signature: signMessage(signer.secretKey, MAP_DOMAIN, mapSigningPayload(msg.nonce, t.machine.publicKey, version)),
        endpoints: opts.endpoints ?? [],
        ...(opts.resume !== undefined ? { resume: opts.resume } : {}),
        ...(opts.attrs !== undefined ? { attrs: opts.attrs } : {})
      }
      ws.send(JSON.stringify(hello))
    } else if (msg.type === 'map') {
      c.netmap = msg.netmap
      c.session = msg.session
      c.seq = msg.seq
    } else if (msg.type === 'delta') {
      if (c.netmap === undefined && opts.resume === undefined) c.problems.push('delta before map')
      if (msg.seq !== c.seq + 1) c.problems.push(`delta seq ${msg.seq} after ${c.seq}`)
      c.seq = msg.seq
      c.deltas.push(msg)
      if (c.netmap !== undefined) c.netmap = applyDelta(c.netmap, msg)
    }
  })
  return c
}

/** connectReady connects and waits for the full map. */
export async function connectReady (url: string, t: TestNode, opts: ConnectOptions = {}): Promise<MapTestClient> {
  const c = connectClient(url, t, opts)
  await waitUntil(() => c.netmap !== undefined || c.isClosed(), `${t.node.name}'s full map`)
  if (c.netmap === undefined) throw new Error(`${t.node.name} was refused: ${JSON.stringify(c.lastError())}`)
  return c
}
