import type { IncomingMessage, Server } from 'node:http'
import type { Duplex } from 'node:stream'
import { randomBytes } from 'node:crypto'
import { WebSocketServer, WebSocket, type RawData } from 'ws'
import type { Registry } from 'prom-client'
import {
  PROTOCOL_VERSION, MAP_DOMAIN, MapHello, ClientEndpoints, validate, mapSigningPayload,
  checkProtocolVersion, isWarrenError, WarrenError, type ClientMessage, type Node, type Peer, type FilterRule
} from '@warren/protocol'
import type { MapNodeSource, MapPolicy, MapPolicyChange, MapLogger } from './types.js'
import { checkEndpoints } from './endpoints.js'
import { verifyMachineSignature } from './verify.js'
import { createOutbox, messageLength, type Outbox } from './outbox.js'
import { createMapMetrics, type MapMetrics } from './metrics.js'

/** MAP_PATH is where nodes open their map session (a WebSocket on the API server). */
export const MAP_PATH = '/v1/machine/map'

/**
 * MapCloseCode are the WebSocket close codes a map session ends with. A node reads the
 * `error` message sent just before for the reason; the code tells it whether retrying
 * can help (4401/4403/4426 cannot, 4409/4408/1001 can).
 */
export const MapCloseCode = {
  badMessage: 4400,
  unauthenticated: 4401,
  forbidden: 4403,
  helloTimeout: 4408,
  replaced: 4409,
  versionMismatch: 4426,
  shuttingDown: 1001
} as const

export interface MapServiceOptions {
  source: MapNodeSource
  policy: MapPolicy
  /** MagicDNS domain sent in every map */
  domain: string
  /** changes within this window reach a node as one delta (default 30 ms) */
  coalesceMs?: number
  /** ws ping interval; a node that has not answered the previous ping is closed (default 15 s) */
  pingIntervalMs?: number
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
  /** setPolicy swaps in a new policy engine and sends every node what changed. */
  setPolicy: (policy: MapPolicy) => void
  /**
   * policyChanged re-reads peers and filters after the engine changed in place (its
   * setPolicy): of the ids given (what the engine reported), or of every session.
   */
  policyChanged: (ids?: Iterable<string>) => void
  /** setDomain changes the MagicDNS domain for every node. */
  setDomain: (domain: string) => void
  stats: () => MapStats
  metrics: MapMetrics
  /** close ends every session (code 1001) and stops timers; the source is left alone. */
  close: () => Promise<void>
}

interface NodeEntry {
  node: Node
  /** member: active and not expired, so known to the policy and visible to peers */
  member: boolean
  peerJson: string
  selfJson: string
  expiryTimer?: NodeJS.Timeout
  ephemeralTimer?: NodeJS.Timeout
}

interface Session {
  nodeId: string
  id: string
  seq: number
  ws: WebSocket | null
  alive: boolean
  /** the peers this node has, counting what is queued for it */
  sentPeers: Set<string>
  filterRef: FilterRule[] | null
  filterJson: string
  selfJson: string
  dnsJson: string
  pendingChanged: Set<string>
  pendingRemoved: Set<string>
  pendingSelf: boolean
  pendingFilter: boolean
  pendingDns: boolean
  dropTimer?: NodeJS.Timeout
}

const EMPTY_PEERS: ReadonlySet<string> = new Set()
const NO_CHANGE: MapPolicyChange = Object.assign(new Set<string>(), { peersGained: new Set<string>(), peersLost: new Set<string>(), filterChanged: new Set<string>() })
const NO_FILTER: FilterRule[] = []
const MAX_TIMER_MS = 2 ** 31 - 1

/** peerView is what other nodes see of a node: never its machine key, status or creation time. */
function peerView (n: Node): Peer {
  const p: Peer = {
    id: n.id,
    name: n.name,
    fqdn: n.fqdn,
    tags: n.tags,
    wgKey: n.wgKey,
    ipv4: n.ipv4,
    ipv6: n.ipv6,
    endpoints: n.endpoints,
    online: n.online
  }
  if (n.user !== undefined) p.user = n.user
  if (n.lastSeen !== undefined) p.lastSeen = n.lastSeen
  if (n.keyExpiry !== undefined) p.keyExpiry = n.keyExpiry
  return p
}

function expiredMessage (n: Node): string {
  return `node '${n.name}' has expired; an admin must re-authenticate it, or join again with a new auth key`
}

function keyExpired (n: Node, now: number): boolean {
  return n.keyExpiry !== undefined && Date.parse(n.keyExpiry) <= now
}

/**
 * createMapService streams network maps to nodes. It keeps, per node, the peers and the
 * filter it last sent, so a node change is turned into deltas for exactly the sessions
 * it affects (as the policy engine reports them) and never into a rebuild of all maps.
 * Each node's peer view is serialized once and reused for every recipient.
 */
export function createMapService (opts: MapServiceOptions): MapService {
  const source = opts.source
  let policy = opts.policy
  const coalesceMs = opts.coalesceMs ?? 30
  const pingIntervalMs = opts.pingIntervalMs ?? 15_000
  const helloTimeoutMs = opts.helloTimeoutMs ?? 10_000
  const resumeWindowMs = opts.resumeWindowMs ?? 120_000
  const ephemeralTimeoutMs = opts.ephemeralTimeoutMs ?? 300_000
  const maxBufferedBytes = opts.maxBufferedBytes ?? 64 * 1024 * 1024
  const sendHighWaterBytes = opts.sendHighWaterBytes ?? 256 * 1024
  const fragmentBytes = opts.fragmentBytes ?? 4 * 1024
  const log = opts.log
  const metrics = createMapMetrics(opts.registry)
  const sentByType = {
    challenge: metrics.messages.labels('challenge'),
    map: metrics.messages.labels('map'),
    delta: metrics.messages.labels('delta'),
    error: metrics.messages.labels('error')
  }
  const counts = { messages: 0, bytes: 0, changes: 0, fanout: 0, connected: 0 }

  const wss = new WebSocketServer({ noServer: true, maxPayload: opts.maxPayload ?? 16 * 1024, perMessageDeflate: false })
  const entries = new Map<string, NodeEntry>()
  const sessions = new Map<string, Session>()
  const dirty = new Set<Session>()
  const filterJsonCache = new WeakMap<FilterRule[], string>()
  const outboxes = new WeakMap<WebSocket, Outbox>()
  let flushTimer: NodeJS.Timeout | undefined
  let dnsJson = JSON.stringify({ domain: opts.domain, magicDns: true })
  let closed = false

  // ---------- node entries and the policy's node set ----------

  function isMember (n: Node): boolean {
    return n.status === 'active' && !keyExpired(n, Date.now())
  }

  function mayConnect (n: Node): boolean {
    return n.status !== 'expired' && !keyExpired(n, Date.now())
  }

  function peersFor (id: string): ReadonlySet<string> {
    return entries.get(id)?.member === true ? policy.peersOf(id) : EMPTY_PEERS
  }

  function filterFor (id: string): FilterRule[] {
    return entries.get(id)?.member === true ? policy.filterFor(id) : NO_FILTER
  }

  function armTimers (e: NodeEntry): void {
    clearTimeout(e.expiryTimer)
    e.expiryTimer = undefined
    if (e.node.keyExpiry !== undefined && e.node.status !== 'expired') {
      const left = Date.parse(e.node.keyExpiry) - Date.now()
      if (left > 0) {
        e.expiryTimer = setTimeout(() => {
          e.expiryTimer = undefined
          const cur = entries.get(e.node.id)
          if (cur === e) onUpsert(e.node)
        }, Math.min(left + 5, MAX_TIMER_MS))
        e.expiryTimer.unref()
      }
    }
    const live = sessions.get(e.node.id)?.ws != null
    if (e.node.ephemeral && !live && e.ephemeralTimer === undefined) armEphemeral(e)
  }

  function armEphemeral (e: NodeEntry): void {
    clearTimeout(e.ephemeralTimer)
    e.ephemeralTimer = setTimeout(() => {
      e.ephemeralTimer = undefined
      if (entries.get(e.node.id) !== e || sessions.get(e.node.id)?.ws != null) return
      log?.info({ node: e.node.id, name: e.node.name, awayMs: ephemeralTimeoutMs }, 'deleting ephemeral node that stayed away')
      settle(source.deleteNode(e.node.id, 'map-server'), 'delete an ephemeral node')
    }, ephemeralTimeoutMs)
    e.ephemeralTimer.unref()
  }

  function settle (p: unknown, what: string): void {
    if (p !== null && typeof p === 'object' && typeof (p as Promise<unknown>).then === 'function') {
      (p as Promise<unknown>).then(undefined, (err: unknown) => {
        metrics.errors.labels('state_write').inc()
        log?.error({ err }, `map service could not ${what}`)
      })
    }
  }

  function makeEntry (n: Node, prev?: NodeEntry): NodeEntry {
    const e: NodeEntry = prev ?? { node: n, member: false, peerJson: '', selfJson: '' }
    e.node = n
    e.member = isMember(n)
    e.peerJson = JSON.stringify(peerView(n))
    e.selfJson = JSON.stringify(n)
    return e
  }

  // ---------- reacting to node changes ----------

  function touch (s: Session): void {
    if (s.ws === null) return
    dirty.add(s)
    if (flushTimer === undefined && !closed) flushTimer = setTimeout(flush, coalesceMs)
  }

  function queueAdd (s: Session, peerId: string): void {
    s.sentPeers.add(peerId)
    s.pendingRemoved.delete(peerId)
    s.pendingChanged.add(peerId)
    touch(s)
  }

  function queueRemove (s: Session, peerId: string): void {
    s.sentPeers.delete(peerId)
    s.pendingChanged.delete(peerId)
    s.pendingRemoved.add(peerId)
    touch(s)
  }

  /** reconcilePeers compares a session's peers with the policy's answer in full. */
  function reconcilePeers (s: Session): void {
    const want = peersFor(s.nodeId)
    for (const id of s.sentPeers) if (!want.has(id) || !entries.has(id)) queueRemove(s, id)
    for (const id of want) if (!s.sentPeers.has(id) && entries.has(id)) queueAdd(s, id)
  }

  /** filterJson serializes each distinct filter once: nodes that share a filter share its array. */
  function filterJson (ref: FilterRule[]): string {
    let json = filterJsonCache.get(ref)
    if (json === undefined) filterJsonCache.set(ref, json = JSON.stringify(ref))
    return json
  }

  function reconcileFilter (s: Session): void {
    const ref = filterFor(s.nodeId)
    if (ref === s.filterRef) return
    s.filterRef = ref
    const json = filterJson(ref)
    if (json === s.filterJson) return
    s.filterJson = json
    s.pendingFilter = true
    touch(s)
  }

  /**
   * onUpsert turns one node change into queued deltas. The engine names the nodes that
   * gained or lost this node as a peer and those whose filter changed; the node's
   * current peers get its new view when that changed. Nothing else is looked at, so a
   * change costs what it affects, not the size of the network.
   */
  function onUpsert (n: Node): void {
    if (closed) return
    const started = process.hrtime.bigint()
    const prev = entries.get(n.id)
    const wasMember = prev?.member ?? false
    const oldPeerJson = prev?.peerJson
    const e = makeEntry(n, prev)
    entries.set(n.id, e)
    armTimers(e)
    const viewChanged = oldPeerJson !== e.peerJson

    let change: MapPolicyChange = NO_CHANGE
    if (e.member) change = policy.upsertNode(n)
    else if (wasMember) change = policy.removeNode(n.id)
    const touched = new Set<Session>()
    applyChange(n.id, change, touched)
    if (viewChanged && e.member) {
      for (const id of policy.peersOf(n.id)) {
        const s = sessions.get(id)
        if (s === undefined || !s.sentPeers.has(n.id)) continue
        queueAdd(s, n.id)
        touched.add(s)
      }
    }

    const own = sessions.get(n.id)
    if (own !== undefined) {
      if (!mayConnect(n)) {
        endSession(own, 'node_expired', expiredMessage(n), MapCloseCode.forbidden)
      } else {
        touched.add(own)
        if (own.selfJson !== e.selfJson) {
          own.selfJson = e.selfJson
          own.pendingSelf = true
          touch(own)
        }
        if (wasMember !== e.member || change.peersGained.size > 0 || change.peersLost.size > 0) reconcilePeers(own)
        reconcileFilter(own)
      }
    }
    account(touched.size, started)
  }

  function onRemove (n: Node): void {
    if (closed) return
    const started = process.hrtime.bigint()
    const e = entries.get(n.id)
    if (e === undefined) return
    clearTimeout(e.expiryTimer)
    clearTimeout(e.ephemeralTimer)
    entries.delete(n.id)
    const touched = new Set<Session>()
    if (e.member) applyChange(n.id, policy.removeNode(n.id), touched)
    const own = sessions.get(n.id)
    if (own !== undefined) endSession(own, 'node_deleted', `node '${n.name}' was deleted from the network; join again with an auth key to come back`, MapCloseCode.forbidden)
    account(touched.size, started)
  }

  /** applyChange queues what the policy engine says one node's change did to other sessions. */
  function applyChange (changedId: string, change: MapPolicyChange, touched: Set<Session>): void {
    const visible = entries.get(changedId)?.member === true
    for (const id of change.peersGained) {
      const s = sessions.get(id)
      if (s === undefined || id === changedId || !visible) continue
      queueAdd(s, changedId)
      touched.add(s)
    }
    for (const id of change.peersLost) {
      const s = sessions.get(id)
      if (s === undefined || !s.sentPeers.has(changedId)) continue
      queueRemove(s, changedId)
      touched.add(s)
    }
    for (const id of change.filterChanged) {
      const s = sessions.get(id)
      if (s === undefined || id === changedId) continue
      reconcileFilter(s)
      touched.add(s)
    }
  }

  function account (touched: number, started: bigint): void {
    counts.changes++
    counts.fanout += touched
    metrics.fanout.observe(touched)
    metrics.changeSeconds.observe(Number(process.hrtime.bigint() - started) / 1e9)
  }

  function recompute (ids?: Iterable<string>): void {
    const list = ids === undefined ? [...sessions.values()] : [...ids].map(id => sessions.get(id))
    for (const s of list) {
      if (s === undefined) continue
      reconcilePeers(s)
      reconcileFilter(s)
    }
  }

  // ---------- sending ----------

  /** send queues one message, given as pieces (see Outbox.send), on a node's socket. */
  function send (s: Session | null, ws: WebSocket, type: keyof typeof sentByType, text: string | readonly string[]): void {
    if (ws.readyState !== WebSocket.OPEN) return
    if (s !== null && ws.bufferedAmount > maxBufferedBytes) {
      log?.warn({ node: s.nodeId, buffered: ws.bufferedAmount }, 'map session too slow to read its deltas; dropping it so it resumes')
      metrics.errors.labels('slow_consumer').inc()
      ws.terminate()
      return
    }
    const length = messageLength(text)
    outboxOf(ws).send(text)
    sentByType[type].inc()
    metrics.bytes.inc(length)
    counts.messages++
    counts.bytes += length
  }

  function sendError (ws: WebSocket, code: string, message: string): void {
    metrics.errors.labels(code).inc()
    send(null, ws, 'error', JSON.stringify({ type: 'error', code, message: message.slice(0, 4000) }))
  }

  function fail (ws: WebSocket, code: string, message: string, closeCode: number): void {
    sendError(ws, code, message)
    outboxOf(ws).close(closeCode, code)
  }

  function outboxOf (ws: WebSocket): Outbox {
    let o = outboxes.get(ws)
    if (o === undefined) outboxes.set(ws, o = createOutbox(ws, fragmentBytes))
    return o
  }

  /**
   * deltaText is a session's queued changes as one delta message, in pieces: the peer
   * views and the filter go in as the shared strings they are, not copied per recipient.
   */
  function deltaText (s: Session): string[] {
    const out = [`{"type":"delta","seq":${s.seq}`]
    if (s.pendingSelf) out.push(',"self":', s.selfJson)
    if (s.pendingChanged.size > 0) {
      out.push(',"peersChanged":[')
      pushPeers(out, s.pendingChanged)
      out.push(']')
    }
    if (s.pendingRemoved.size > 0) out.push(',"peersRemoved":', JSON.stringify([...s.pendingRemoved]))
    if (s.pendingFilter) out.push(',"filter":', s.filterJson)
    if (s.pendingDns) out.push(',"dns":', s.dnsJson)
    out.push('}')
    clearPending(s)
    return out
  }

  /** pushPeers adds the peer views of ids (those still known) to out, comma-separated. */
  function pushPeers (out: string[], ids: Iterable<string>): void {
    let first = true
    for (const id of ids) {
      const e = entries.get(id)
      if (e === undefined) continue
      if (!first) out.push(',')
      out.push(e.peerJson)
      first = false
    }
  }

  function clearPending (s: Session): void {
    s.pendingChanged.clear()
    s.pendingRemoved.clear()
    s.pendingSelf = false
    s.pendingFilter = false
    s.pendingDns = false
  }

  function hasPending (s: Session): boolean {
    return s.pendingSelf || s.pendingFilter || s.pendingDns || s.pendingChanged.size > 0 || s.pendingRemoved.size > 0
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
    for (const s of dirty) {
      if (s.ws !== null && hasPending(s)) {
        if (s.ws.bufferedAmount > sendHighWaterBytes || outboxOf(s.ws).busy()) {
          held = true
          continue
        }
        s.seq++
        send(s, s.ws, 'delta', deltaText(s))
      }
      dirty.delete(s)
    }
    if (held && !closed) flushTimer = setTimeout(flush, coalesceMs)
  }

  function sendFullMap (s: Session, ws: WebSocket): void {
    const e = entries.get(s.nodeId)!
    clearPending(s)
    s.sentPeers = new Set()
    for (const id of peersFor(s.nodeId)) {
      const p = entries.get(id)
      if (p !== undefined && p.member) s.sentPeers.add(id)
    }
    s.filterRef = filterFor(s.nodeId)
    s.filterJson = filterJson(s.filterRef)
    s.selfJson = e.selfJson
    s.dnsJson = dnsJson
    s.seq = 1
    const out = [`{"type":"map","session":"${s.id}","seq":${s.seq},"netmap":{"self":`, s.selfJson, ',"peers":[']
    pushPeers(out, s.sentPeers)
    out.push('],"filter":', s.filterJson, ',"dns":', s.dnsJson, '}}')
    send(s, ws, 'map', out)
  }

  // ---------- sessions ----------

  function newSession (nodeId: string): Session {
    return {
      nodeId,
      id: randomBytes(18).toString('base64url'),
      seq: 0,
      ws: null,
      alive: true,
      sentPeers: new Set(),
      filterRef: null,
      filterJson: '[]',
      selfJson: '',
      dnsJson,
      pendingChanged: new Set(),
      pendingRemoved: new Set(),
      pendingSelf: false,
      pendingFilter: false,
      pendingDns: false
    }
  }

  /** endSession tells a node why it is being dropped, closes it and forgets its state. */
  function endSession (s: Session, code: string, message: string, closeCode: number): void {
    clearTimeout(s.dropTimer)
    sessions.delete(s.nodeId)
    dirty.delete(s)
    const ws = s.ws
    s.ws = null
    if (ws !== null) {
      counts.connected--
      metrics.connected.dec()
      fail(ws, code, message, closeCode)
    }
  }

  function onDisconnect (s: Session, ws: WebSocket): void {
    if (s.ws !== ws) return
    s.ws = null
    dirty.delete(s)
    counts.connected--
    metrics.connected.dec()
    const e = entries.get(s.nodeId)
    if (e !== undefined) {
      settle(source.setOnline(s.nodeId, false), 'mark a node offline')
      if (e.node.ephemeral) armEphemeral(e)
    }
    clearTimeout(s.dropTimer)
    s.dropTimer = setTimeout(() => {
      if (sessions.get(s.nodeId) === s && s.ws === null) sessions.delete(s.nodeId)
    }, resumeWindowMs)
    s.dropTimer.unref()
  }

  function parse (data: RawData, isBinary: boolean): unknown {
    if (isBinary) throw Object.assign(new Error('map messages are JSON text frames, not binary'), { code: 'invalid_json' })
    const text = Array.isArray(data) ? Buffer.concat(data).toString('utf8') : Buffer.isBuffer(data) ? data.toString('utf8') : Buffer.from(data).toString('utf8')
    try {
      return JSON.parse(text)
    } catch (err) {
      throw Object.assign(new Error(`map message is not valid JSON: ${(err as Error).message}`), { code: 'invalid_json' })
    }
  }

  /**
   * readMessage parses and validates one client message. It picks the schema by `type`
   * (a union's error would only say "expected union value") and checks a hello's version
   * first, so a newer node hears about the version rather than about a field it added.
   */
  function readMessage (data: RawData, isBinary: boolean): ClientMessage {
    const raw = parse(data, isBinary) as { type?: unknown, version?: unknown } | null
    const type = raw !== null && typeof raw === 'object' ? raw.type : undefined
    if (type === 'hello') {
      if (typeof raw!.version === 'number') checkProtocolVersion(raw!.version, 'this node')
      return validate(MapHello, raw, 'map hello')
    }
    if (type === 'endpoints') return validate(ClientEndpoints, raw, 'map endpoints message')
    throw new WarrenError('invalid_input', `map message: /type: ${JSON.stringify(type)?.slice(0, 40) ?? 'missing'} is not a message a node may send; expected 'hello' or 'endpoints'`, { field: '/type' })
  }

  function onConnection (ws: WebSocket): void {
    const nonce = randomBytes(24).toString('base64url')
    let session: Session | null = null
    const helloTimer = setTimeout(() => {
      if (session === null) fail(ws, 'hello_timeout', `no signed hello within ${helloTimeoutMs} ms of the challenge`, MapCloseCode.helloTimeout)
    }, helloTimeoutMs)
    ws.on('error', err => log?.debug({ err }, 'map socket error'))
    ws.on('pong', () => { if (session !== null) session.alive = true })
    ws.on('close', () => {
      clearTimeout(helloTimer)
      if (session !== null) onDisconnect(session, ws)
    })
    ws.on('message', (data, isBinary) => {
      if (ws.readyState !== WebSocket.OPEN) return
      let msg: ClientMessage
      try {
        msg = readMessage(data, isBinary)
      } catch (err) {
        const code = isWarrenError(err) ? err.code : ((err as { code?: string }).code ?? 'invalid_input')
        fail(ws, code, (err as Error).message, code === 'protocol_version' ? MapCloseCode.versionMismatch : MapCloseCode.badMessage)
        return
      }
      if (session === null) {
        if (msg.type !== 'hello') {
          fail(ws, 'unexpected_message', `the first map message must be a signed hello answering the challenge, not '${msg.type}'`, MapCloseCode.unauthenticated)
          return
        }
        clearTimeout(helloTimer)
        session = onHello(ws, msg, nonce)
        return
      }
      if (msg.type !== 'endpoints') {
        fail(ws, 'unexpected_message', 'hello was already received on this session; reconnect to start another', MapCloseCode.badMessage)
        return
      }
      onEndpoints(session, ws, msg.endpoints)
    })
    send(null, ws, 'challenge', JSON.stringify({ type: 'challenge', version: PROTOCOL_VERSION, nonce }))
  }

  function onEndpoints (s: Session, ws: WebSocket, endpoints: string[]): void {
    let checked: string[]
    try {
      checked = checkEndpoints(endpoints)
    } catch (err) {
      sendError(ws, (err as { code: string }).code, (err as Error).message)
      return
    }
    const e = entries.get(s.nodeId)
    if (e !== undefined && JSON.stringify(e.node.endpoints) !== JSON.stringify(checked)) {
      settle(source.setEndpoints(s.nodeId, checked), 'record endpoints')
    }
  }

  function onHello (ws: WebSocket, hello: MapHello, nonce: string): Session | null {
    const unauthenticated = (code: string, message: string): null => {
      fail(ws, code, message, MapCloseCode.unauthenticated)
      return null
    }
    if (hello.nonce !== nonce) return unauthenticated('bad_nonce', 'hello signs a different nonce than this session\'s challenge; sign the nonce just received')
    if (!verifyMachineSignature(hello.machineKey, MAP_DOMAIN, mapSigningPayload(hello.nonce, hello.machineKey, hello.version), hello.signature)) {
      return unauthenticated('bad_signature', 'hello signature does not verify with the machine key it names; the node must sign the challenge with its own machine key')
    }
    const node = source.nodeByMachineKey(hello.machineKey)
    if (node === undefined) {
      return unauthenticated('unknown_node', 'no node is registered with this machine key (it may have been deleted); join again with an auth key')
    }
    if (!mayConnect(node)) {
      fail(ws, 'node_expired', expiredMessage(node), MapCloseCode.forbidden)
      return null
    }
    let endpoints: string[]
    try {
      endpoints = checkEndpoints(hello.endpoints, 'hello.endpoints')
    } catch (err) {
      fail(ws, 'bad_endpoint', (err as Error).message, MapCloseCode.badMessage)
      return null
    }
    let e = entries.get(node.id)
    if (e === undefined) {
      onUpsert(node)
      e = entries.get(node.id)!
    }

    let s = sessions.get(node.id)
    if (s?.ws != null) {
      const old = s.ws
      s.ws = null
      counts.connected--
      metrics.connected.dec()
      fail(old, 'session_replaced', 'another map session for this node started; this one is closed', MapCloseCode.replaced)
    }
    clearTimeout(s?.dropTimer)
    clearTimeout(e.ephemeralTimer)
    e.ephemeralTimer = undefined

    const resume = hello.resume
    const resumable = s !== undefined && resume !== undefined && resume.session === s.id && resume.seq === s.seq
    if (s === undefined || !resumable) {
      s = newSession(node.id)
      sessions.set(node.id, s)
    }
    s.ws = ws
    s.alive = true
    counts.connected++
    metrics.connected.inc()
    if (resumable) {
      // Catch up with what changed while away: an empty delta still confirms the resume.
      if (s.selfJson !== e.selfJson) { s.selfJson = e.selfJson; s.pendingSelf = true }
      if (s.dnsJson !== dnsJson) { s.dnsJson = dnsJson; s.pendingDns = true }
      s.seq++
      send(s, ws, 'delta', deltaText(s))
    } else {
      sendFullMap(s, ws)
    }
    settle(source.setOnline(node.id, true), 'mark a node online')
    if (JSON.stringify(endpoints) !== JSON.stringify(e.node.endpoints)) settle(source.setEndpoints(node.id, endpoints), 'record endpoints')
    return s
  }

  // ---------- lifecycle ----------

  const onUpsertListener = (n: Node): void => onUpsert(n)
  const onRemoveListener = (n: Node): void => onRemove(n)
  source.events.on('node-upserted', onUpsertListener)
  source.events.on('node-removed', onRemoveListener)
  for (const n of source.listNodes()) {
    const e = makeEntry(n)
    entries.set(n.id, e)
    armTimers(e)
  }
  policy.setNodes([...entries.values()].filter(e => e.member).map(e => e.node))

  const pinger = setInterval(() => {
    for (const s of sessions.values()) {
      const ws = s.ws
      if (ws === null) continue
      if (!s.alive) {
        log?.info({ node: s.nodeId }, 'map session missed its keepalive; closing it')
        metrics.errors.labels('keepalive_timeout').inc()
        ws.terminate()
        continue
      }
      s.alive = false
      ws.ping()
    }
  }, pingIntervalMs)
  pinger.unref()

  function handleUpgrade (req: IncomingMessage, socket: Duplex, head: Buffer): void {
    if (closed) {
      socket.destroy()
      return
    }
    wss.handleUpgrade(req, socket, head, ws => onConnection(ws))
  }

  return {
    handleUpgrade,
    attach (server: Server) {
      const listener = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
        const path = (req.url ?? '').split('?')[0]
        if (path === MAP_PATH) {
          handleUpgrade(req, socket, head)
        } else if (server.listenerCount('upgrade') === 1) {
          socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n')
        }
      }
      server.on('upgrade', listener)
      return () => { server.off('upgrade', listener) }
    },
    setPolicy (next: MapPolicy) {
      policy = next
      policy.setNodes([...entries.values()].filter(e => e.member).map(e => e.node))
      recompute()
    },
    policyChanged: recompute,
    setDomain (domain: string) {
      dnsJson = JSON.stringify({ domain, magicDns: true })
      for (const s of sessions.values()) {
        if (s.dnsJson === dnsJson) continue
        s.dnsJson = dnsJson
        s.pendingDns = true
        touch(s)
      }
    },
    stats: () => ({ ...counts, sessions: sessions.size, nodes: entries.size }),
    metrics,
    async close () {
      if (closed) return
      closed = true
      clearInterval(pinger)
      clearTimeout(flushTimer)
      source.events.off('node-upserted', onUpsertListener)
      source.events.off('node-removed', onRemoveListener)
      for (const e of entries.values()) {
        clearTimeout(e.expiryTimer)
        clearTimeout(e.ephemeralTimer)
      }
      for (const s of sessions.values()) {
        clearTimeout(s.dropTimer)
        if (s.ws !== null) fail(s.ws, 'shutting_down', 'the controller is shutting down; reconnect shortly', MapCloseCode.shuttingDown)
      }
      sessions.clear()
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
