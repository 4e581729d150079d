import type { IncomingMessage, Server } from 'node:http'
import type { Duplex } from 'node:stream'
import { WebSocketServer } from 'ws'
import { servedRoutes } from '@warren/protocol'
import type { Registry } from 'prom-client'
import type { MapNodeSource, MapPolicy, MapLogger } from './types.js'
import { createMapMetrics, type MapMetrics } from './metrics.js'
import { writeRawError } from '../raw-http.js'
import { createMeshPolicy, type MeshPolicy } from './mesh-policy.js'
import { createMapFanout } from './fanout.js'
import { createMapWire } from './wire.js'
import { createMapSessions } from './sessions.js'
import type { NatConfig, PeerCallMeMaybe, RelayGrant, RelayRevoke } from '@warren/protocol'
import { createRelayBroker, type MeshView, type RelayBroker, type RelayBrokerOptions } from '../relay/relay-broker.js'
import { createCallMeMaybe, type CallMeMaybeOptions } from './call-me-maybe.js'

/** MAP_PATH is where nodes open their map session (a WebSocket on the API server). */
export const MAP_PATH = '/v1/machine/map'

export interface MapServiceOptions {
  source: MapNodeSource
  policy: MapPolicy
  /** MagicDNS domain sent in every map */
  domain: string
  /** changes within this window reach a node as one delta (default 30 ms) */
  coalesceMs?: number
  /** ws ping interval; a node that has not answered the previous ping is closed (default 15 s) */
  pingIntervalMs?: number
  /** the ping interval of nodes serving subnet routes (default 3 s), so a router cut off is replaced within about 6 s */
  routerPingIntervalMs?: number
  /** how long an unauthenticated socket may wait before its hello (default 10 s) */
  helloTimeoutMs?: number
  /** how long a disconnected session's state is kept for resume (default 2 min) */
  resumeWindowMs?: number
  /** how long an ephemeral node may stay away before it is deleted (default 5 min) */
  ephemeralTimeoutMs?: number
  /** largest inbound message (default 16 KiB) */
  maxPayload?: number
  /** larger messages go out as WebSocket fragments of this size, one at a time (default 4 KiB) */
  fragmentBytes?: number
  /** deltas wait while a node's socket holds more unsent bytes than this (default 256 KiB) */
  sendHighWaterBytes?: number
  /** a node whose socket has more unsent bytes than this is dropped; it resumes later (default 64 MiB) */
  maxBufferedBytes?: number
  /** STUN servers and relays told to every node */
  nat?: NatConfig
  /** the kernel relays this service grants allocations on (none: relay requests are refused) */
  relay?: Omit<RelayBrokerOptions, 'mesh' | 'send' | 'log'>
  /** how often a node may call its peers (see CallMeMaybe) */
  callMeMaybeRate?: CallMeMaybeOptions['rate']
  registry?: Registry
  log?: MapLogger
}

/** MapStats are counters for benchmarks and tests (the same facts as the metrics). */
export interface MapStats {
  connected: number
  sessions: number
  nodes: number
  messages: number
  bytes: number
  changes: number
  fanout: number
}

export interface MapService {
  /** handleUpgrade takes over an HTTP upgrade request for MAP_PATH. */
  handleUpgrade: (req: IncomingMessage, socket: Duplex, head: Buffer) => void
  /** attach serves MAP_PATH on an HTTP(S) server's upgrades; returns a function that detaches. */
  attach: (server: Server) => () => void
  /**
   * mesh is the one writer of the policy engine: give policy and user changes to its
   * setPolicy (or a new engine to setEngine), and every node hears what changed.
   */
  mesh: MeshPolicy
  /**
   * onMeshChange registers a listener called after each change the mesh took (a node's
   * record, or the policy: `ids` are the nodes whose peers may have changed, all when
   * absent), so relays can judge their pairs again; returns a function that removes it.
   */
  onMeshChange: (listener: (ids?: Iterable<string>) => void) => () => void
  /** setDomain changes the MagicDNS domain for every node. */
  setDomain: (domain: string) => void
  /** setNat changes the STUN servers and relays every node is told. */
  setNat: (nat: NatConfig | undefined) => void
  /** relays grants and revokes kernel-relay allocations (see RelayBroker); its relays join the maps' NAT config */
  relays: RelayBroker
  /** sendRelay sends a grant or revocation to a node's session; false when it has none */
  sendRelay: (nodeId: string, msg: RelayGrant | RelayRevoke) => boolean
  stats: () => MapStats
  /** primaryRoutes lists the routes a node is the primary router for (see PrimaryRoutes) */
  primaryRoutes: (nodeId: string) => string[]
  metrics: MapMetrics
  /** close ends every session (code 1001) and stops timers; the source is left alone. */
  close: () => Promise<void>
}

/**
 * createMapService streams network maps to nodes. It wires four parts: MeshPolicy, the
 * one writer of the policy engine, which follows the node source; the fan-out, which
 * turns each change into queued deltas for exactly the sessions it affects; the
 * sessions, which run the handshake and each node's socket; and the wire, which frames
 * messages and keeps sockets alive. Changes flow one way: source -> mesh -> fan-out
 * -> wire; what a session learns (online, endpoints) goes to the fan-out and is only
 * recorded in the source, never announced back.
 */
export function createMapService (opts: MapServiceOptions): MapService {
  const coalesceMs = opts.coalesceMs ?? 30
  const metrics = createMapMetrics(opts.registry)
  const counts = { changes: 0, fanout: 0 }
  const wss = new WebSocketServer({ noServer: true, maxPayload: opts.maxPayload ?? 16 * 1024, perMessageDeflate: false })
  const wire = createMapWire({
    metrics,
    fragmentBytes: opts.fragmentBytes ?? 4 * 1024,
    sendHighWaterBytes: opts.sendHighWaterBytes ?? 256 * 1024,
    maxBufferedBytes: opts.maxBufferedBytes ?? 64 * 1024 * 1024,
    pingIntervalMs: opts.pingIntervalMs ?? 15_000,
    routerPingIntervalMs: opts.routerPingIntervalMs ?? 3_000,
    isRouter: id => { const n = fanout.node(id); return n !== undefined && servedRoutes(n).length > 0 },
    ...(opts.log !== undefined ? { log: opts.log } : {})
  })
  let flushTimer: NodeJS.Timeout | undefined
  let closed = false
  const meshListeners = new Set<(ids?: Iterable<string>) => void>()
  const meshChanged = (ids?: Iterable<string>): void => { for (const l of meshListeners) l(ids) }

  const scheduleFlush = (): void => { if (flushTimer === undefined && !closed) flushTimer = setTimeout(flush, coalesceMs) }
  const account = (touched: number, started: bigint): void => {
    counts.changes++
    counts.fanout += touched
    metrics.fanout.observe(touched)
    metrics.changeSeconds.observe(Number(process.hrtime.bigint() - started) / 1e9)
  }

  // The mesh reads the fan-out and the sessions only through this listener, created first.
  const mesh: MeshPolicy = createMeshPolicy({
    source: opts.source,
    engine: opts.policy,
    listener: {
      nodeChanged (r) {
        if (closed) return
        sessions.nodeChanged(r.node)
        account(fanout.nodeChanged(r.node, r), r.started)
        meshChanged([r.node.id, ...r.policy])
      },
      nodeRemoved (r) {
        if (closed) return
        const touched = fanout.nodeRemoved(r.node, r.policy)
        sessions.nodeRemoved(r.node)
        account(touched, r.started)
        meshChanged([r.node.id, ...r.policy])
      },
      policyChanged: ids => {
        if (closed) return
        fanout.policyChanged(ids)
        meshChanged(ids)
      }
    }
  })
  const fanout = createMapFanout({ peers: mesh, domain: opts.domain, ...(opts.nat !== undefined ? { nat: opts.nat } : {}), onDirty: scheduleFlush })
  fanout.loadNodes(opts.source.listNodes())
  const sessions = createMapSessions({
    source: opts.source,
    peers: mesh,
    fanout,
    wire,
    metrics,
    helloTimeoutMs: opts.helloTimeoutMs ?? 10_000,
    resumeWindowMs: opts.resumeWindowMs ?? 120_000,
    ephemeralTimeoutMs: opts.ephemeralTimeoutMs ?? 300_000,
    account,
    relayRequest: (nodeId, peer) => { void relays.request(nodeId, peer) },
    relayRelease: (nodeId, peer) => { relays.release(nodeId, peer) },
    callMeMaybe: (nodeId, peer) => { callMeMaybe(nodeId, peer) },
    ...(opts.log !== undefined ? { log: opts.log } : {})
  })

  /** sendOutside sends a message outside the numbered delta stream; false when the node has no session. */
  function sendOutside (nodeId: string, type: 'relay' | 'call-me-maybe', msg: RelayGrant | RelayRevoke | PeerCallMeMaybe): boolean {
    const ws = sessions.socketOf(nodeId)
    if (ws === undefined || closed) return false
    wire.send(ws, type, JSON.stringify(msg), nodeId)
    return true
  }
  const sendRelay = (nodeId: string, msg: RelayGrant | RelayRevoke): boolean => sendOutside(nodeId, 'relay', msg)
  // The fan-out's node records are the ones peers were last told about.
  const meshView: MeshView = { node: id => fanout.node(id), isMember: id => mesh.isMember(id), peersOf: id => mesh.peersOf(id) }
  const callMeMaybe = createCallMeMaybe({
    mesh: meshView,
    send: (nodeId, msg) => sendOutside(nodeId, 'call-me-maybe', msg),
    ...(opts.callMeMaybeRate !== undefined ? { rate: opts.callMeMaybeRate } : {}),
    ...(opts.log !== undefined ? { log: opts.log } : {})
  })
  const relays = createRelayBroker({
    backends: [],
    ...opts.relay,
    mesh: meshView,
    send: sendRelay,
    onBackendsChanged: () => { fanout.setNat(natWithRelays()) },
    ...(opts.log !== undefined ? { log: opts.log } : {})
  })
  // The kernel relays' broker hears of mesh changes first, like any other listener.
  meshListeners.add(ids => { relays.meshChanged(ids) })

  /** natWithRelays is the NAT config given, plus each relay the broker holds (its control port also answers STUN). */
  function natWithRelays (): NatConfig | undefined {
    const extra = relays.backends().map(b => b.info).filter(r => !(opts.nat?.relays ?? []).some(x => x.id === r.id))
    if (opts.nat === undefined && extra.length === 0) return undefined
    const base = opts.nat ?? { stun: [], relays: [] }
    const stun = [...base.stun, ...extra.flatMap(r => r.udp !== undefined && !base.stun.includes(r.udp) ? [r.udp] : [])]
    return { stun, relays: [...base.relays, ...extra] }
  }

  /**
   * flush sends each dirty session its queued changes as one delta. A session whose
   * socket still holds more than sendHighWaterBytes unsent keeps its changes queued
   * (they merge with later ones) until it has read what it was sent, so a slow node
   * costs the controller its peer set, not a growing pile of buffers.
   */
  function flush (): void {
    flushTimer = undefined
    let held = false
    for (const s of fanout.dirty()) {
      const ws = sessions.socketOf(s.nodeId)
      if (ws !== undefined) {
        if (!wire.ready(ws)) {
          held = true
          continue
        }
        const delta = fanout.delta(s)
        if (delta !== undefined) wire.send(ws, 'delta', delta, s.nodeId)
      }
      fanout.settle(s)
    }
    if (held) scheduleFlush()
  }

  function handleUpgrade (req: IncomingMessage, socket: Duplex, head: Buffer): void {
    if (closed) {
      socket.destroy()
      return
    }
    const refused = refuseUpgrade(req)
    if (refused !== undefined) {
      writeRawError(socket, refused.status, 'bad_upgrade', refused.message, refused.status === 426 ? 'Sec-WebSocket-Version: 13\r\n' : '')
      return
    }
    wss.handleUpgrade(req, socket, head, ws => sessions.accept(ws))
  }

  return {
    handleUpgrade,
    attach (server: Server) {
      const listener = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
        const path = (req.url ?? '').split('?')[0]
        if (path === MAP_PATH) {
          handleUpgrade(req, socket, head)
        } else if (server.listenerCount('upgrade') === 1) {
          writeRawError(socket, 404, 'not_found', `no WebSocket endpoint at ${path}; the map session is at ${MAP_PATH}`)
        }
      }
      server.on('upgrade', listener)
      return () => { server.off('upgrade', listener) }
    },
    mesh,
    onMeshChange (listener) {
      meshListeners.add(listener)
      return () => { meshListeners.delete(listener) }
    },
    setDomain: domain => fanout.setDomain(domain),
    setNat: nat => fanout.setNat(nat),
    relays,
    sendRelay,
    primaryRoutes: nodeId => fanout.primaryRoutes(nodeId),
    stats: () => ({ ...wire.counts(), ...counts, connected: sessions.connected(), sessions: fanout.sessionCount(), nodes: fanout.nodeCount() }),
    metrics,
    async close () {
      if (closed) return
      closed = true
      clearTimeout(flushTimer)
      await relays.close()
      mesh.close()
      wire.close()
      sessions.close()
      await new Promise<void>(resolve => wss.close(() => resolve()))
    }
  }
}

/**
 * mountMapService creates the map service and serves it on a server's upgrades at
 * MAP_PATH. Pass the node HTTP(S) server, or anything with one at `.server` (a fastify
 * instance).
 */
export function mountMapService (target: Server | { server: Server }, opts: MapServiceOptions): MapService {
  const server = 'server' in target ? target.server : target
  const service = createMapService(opts)
  const detach = service.attach(server)
  const close = service.close
  service.close = async () => {
    detach()
    await close()
  }
  return service
}

/**
 * refuseUpgrade checks what the ws library would refuse in a WebSocket upgrade, so the
 * refusal goes out in the API's error shape instead of ws's plain text.
 */
function refuseUpgrade (req: IncomingMessage): { status: number, message: string } | undefined {
  if (req.method !== 'GET') return { status: 405, message: `a WebSocket upgrade must be GET, not ${req.method ?? '?'}` }
  if ((req.headers.upgrade ?? '').toLowerCase() !== 'websocket') return { status: 400, message: 'the Upgrade header must be "websocket"' }
  const key = req.headers['sec-websocket-key']
  if (typeof key !== 'string' || !/^[+/0-9A-Za-z]{22}==$/.test(key)) return { status: 400, message: 'the Sec-WebSocket-Key header is missing or not 16 bytes of base64' }
  const version = req.headers['sec-websocket-version']
  if (version !== '13' && version !== '8') return { status: 426, message: 'this server speaks WebSocket version 13 (Sec-WebSocket-Version: 13)' }
  return undefined
}
