import { WebSocket } from 'ws'
import type { MapMetrics } from './metrics.js'
import type { MapLogger } from './types.js'
import type { MapRefusal } from './handshake.js'
import { createOutbox, messageLength, type Outbox } from './outbox.js'
import { encodeForVersion } from './version-encoding.js'

export type MapMessageType = 'challenge' | 'map' | 'delta' | 'error' | 'relay' | 'call-me-maybe'

export interface MapWireOptions {
  metrics: MapMetrics
  /** larger messages go out as WebSocket fragments of this size, one at a time */
  fragmentBytes: number
  /** a session socket with more unsent bytes than this is not ready for a delta */
  sendHighWaterBytes: number
  /** a session socket with more unsent bytes than this is dropped; its node resumes later */
  maxBufferedBytes: number
  /** ping interval; a socket that has not answered the previous ping is closed */
  pingIntervalMs: number
  /**
   * the shorter ping interval of nodes that `isRouter` names (those serving subnet routes):
   * a router cut off from the network is noticed within two of these, and its routes move
   */
  routerPingIntervalMs?: number
  isRouter?: (nodeId: string) => boolean
  log?: MapLogger
}

/**
 * MapWire is the map service's side of the sockets: framing (each socket's messages go
 * through its Outbox, large ones as fragments), back-pressure, errors with close codes,
 * keepalive pings, and the message and byte counts.
 */
export interface MapWire {
  /** send queues one message given as pieces; nodeId marks a session socket, which is dropped when too far behind */
  send: (ws: WebSocket, type: MapMessageType, text: string | readonly string[], nodeId?: string) => void
  /** sendError sends an error message and keeps the socket open */
  sendError: (ws: WebSocket, code: string, message: string) => void
  /** refuse sends the refusal's error, then closes the socket with its close code */
  refuse: (ws: WebSocket, refusal: MapRefusal) => void
  /** setVersion records the protocol version a session socket's node speaks: what is sent to it from then on is encoded for that version */
  setVersion: (ws: WebSocket, version: number) => void
  /** ready says whether a socket can take a delta now: below the high-water mark, no fragmented message in flight */
  ready: (ws: WebSocket) => boolean
  /** keepAlive pings an authenticated socket until it closes; one that misses a pong is terminated */
  keepAlive: (ws: WebSocket, nodeId: string) => void
  counts: () => { messages: number, bytes: number }
  /** close stops the pings */
  close: () => void
}

export function createMapWire (opts: MapWireOptions): MapWire {
  const { metrics, log } = opts
  const sentByType = {
    challenge: metrics.messages.labels('challenge'),
    map: metrics.messages.labels('map'),
    delta: metrics.messages.labels('delta'),
    error: metrics.messages.labels('error'),
    relay: metrics.messages.labels('relay'),
    'call-me-maybe': metrics.messages.labels('call-me-maybe')
  }
  const counts = { messages: 0, bytes: 0 }
  const outboxes = new WeakMap<WebSocket, Outbox>()
  const alive = new Map<WebSocket, { nodeId: string, answered: boolean }>()
  const versions = new WeakMap<WebSocket, number>()

  function outboxOf (ws: WebSocket): Outbox {
    let o = outboxes.get(ws)
    if (o === undefined) outboxes.set(ws, o = createOutbox(ws, opts.fragmentBytes))
    return o
  }

  function send (ws: WebSocket, type: MapMessageType, given: string | readonly string[], nodeId?: string): void {
    if (ws.readyState !== WebSocket.OPEN) return
    const version = versions.get(ws)
    const text = version === undefined ? given : encodeForVersion(given, version)
    if (text === undefined) return
    if (nodeId !== undefined && ws.bufferedAmount > opts.maxBufferedBytes) {
      log?.warn({ node: nodeId, buffered: ws.bufferedAmount }, 'map session too slow to read its deltas; dropping it so it resumes')
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
    send(ws, 'error', JSON.stringify({ type: 'error', code, message: message.slice(0, 4000) }))
  }

  /** sweep pings the sockets of one class (routers or the others), closing those that missed the last ping */
  function sweep (routers: boolean): void {
    for (const [ws, a] of alive) {
      if ((opts.isRouter?.(a.nodeId) ?? false) !== routers) continue
      if (!a.answered) {
        log?.info({ node: a.nodeId }, 'map session missed its keepalive; closing it')
        metrics.errors.labels('keepalive_timeout').inc()
        alive.delete(ws)
        ws.terminate()
        continue
      }
      a.answered = false
      ws.ping()
    }
  }
  const pingers = [setInterval(() => { sweep(false) }, opts.pingIntervalMs)]
  if (opts.isRouter !== undefined) pingers.push(setInterval(() => { sweep(true) }, opts.routerPingIntervalMs ?? opts.pingIntervalMs))
  for (const p of pingers) p.unref()

  return {
    send,
    sendError,
    refuse (ws, refusal) {
      sendError(ws, refusal.code, refusal.message)
      outboxOf(ws).close(refusal.closeCode, refusal.code)
    },
    setVersion: (ws, version) => { versions.set(ws, version) },
    ready: ws => ws.bufferedAmount <= opts.sendHighWaterBytes && !outboxOf(ws).busy(),
    keepAlive (ws, nodeId) {
      const a = { nodeId, answered: true }
      alive.set(ws, a)
      ws.on('pong', () => { a.answered = true })
      ws.once('close', () => { alive.delete(ws) })
    },
    counts: () => ({ ...counts }),
    close () {
      for (const p of pingers) clearInterval(p)
      alive.clear()
    }
  }
}
