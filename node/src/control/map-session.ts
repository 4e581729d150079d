import { EventEmitter } from 'node:events'
import type WebSocket from 'ws'
import {
  ServerMessage, WarrenError, negotiateVersion, ROUTES_AND_PINS_VERSION, MAP_DOMAIN, applyDelta, mapSigningPayload, parseJson, signMessage,
  type MachineKeyPair, type Netmap, type MapHello, type HostAttrs, type ClientEndpoints, type RelayRequest, type RelayRelease, type CallMeMaybe, type Logout,
  type ClientMessage
} from '@warren/protocol'
import { createBackoff, type Backoff } from './backoff.js'

/** MapPosition is where a session stands: enough to resume it after a reconnect or a restart. */
export interface MapPosition {
  session: string
  seq: number
  netmap: Netmap
}

/** NetmapUpdate is emitted for every map the session holds: a full map or one delta applied. */
export interface NetmapUpdate {
  netmap: Netmap
  full: boolean
  session: string
  seq: number
}

export type MapSessionState = 'connecting' | 'connected' | 'disconnected' | 'closed'

export interface MapSessionLogger {
  info(obj: object, msg?: string): void
  warn(obj: object, msg?: string): void
  debug(obj: object, msg?: string): void
}

export interface MapSessionInit {
  /** openSocket opens the WebSocket to /v1/machine/map (a pinned transport's webSocket) */
  openSocket: () => WebSocket
  machineKey: MachineKeyPair
  /** endpoints returns this node's current direct endpoints; polled for changes */
  endpoints: () => string[]
  /** routes returns the subnet routes this node advertises, sent in each hello */
  routes?: () => string[]
  /** attrs returns this node's posture attributes (node:os, ...), sent in each hello */
  attrs?: () => HostAttrs
  /** resumeFrom is a position saved earlier (for example by a previous daemon run) */
  resumeFrom?: MapPosition
  backoff?: Backoff
  /** keepaliveMs: ping interval; a silent connection is dropped after 3 of them */
  keepaliveMs?: number
  /** endpointPollMs: how often local endpoints are checked for changes */
  endpointPollMs?: number
  logger?: MapSessionLogger
}

/**
 * MapSession keeps one WebSocket map session with the controller alive: it answers the
 * challenge with the machine key, takes the full map, applies sequenced deltas to an
 * immutable netmap, and reconnects with jittered backoff, resuming where it stood.
 * Events: 'netmap' (NetmapUpdate), 'state' (MapSessionState), 'server-error' (WarrenError
 * from the controller, for example a deleted node), 'socket-error' (Error: why a connection
 * failed), 'message' (message type, for metrics), 'relay' (RelayGrant or RelayRevoke: kernel
 * relay allocations, outside the numbered map stream), 'call-me-maybe' (PeerCallMeMaybe: a
 * peer started a direct-path burst toward us).
 */
export interface MapSession extends EventEmitter {
  readonly state: MapSessionState
  /** position is the last map held, or undefined before the first one */
  readonly position: MapPosition | undefined
  /** checkEndpoints sends the current endpoints now if they changed */
  checkEndpoints(): void
  /** sendRelayRequest asks for a relay allocation toward a peer, or releases one; false when not connected */
  sendRelayRequest(msg: RelayRequest | RelayRelease): boolean
  /** sendCallMeMaybe tells a peer (through the controller) that we start a direct-path burst toward it; false when not connected */
  sendCallMeMaybe(peerWgKey: string): boolean
  /** sendLogout tells the controller an ephemeral node leaves for good; false when not connected */
  sendLogout(): boolean
  /** close ends the session for good; the last map stays readable */
  close(): void
}

/** DEFAULT_KEEPALIVE_MS is how often the node pings the controller. */
export const DEFAULT_KEEPALIVE_MS = 15_000

/** createMapSession starts a map session; it connects at once and keeps reconnecting until closed. */
export function createMapSession (init: MapSessionInit): MapSession {
  const ev = new EventEmitter()
  const backoff = init.backoff ?? createBackoff()
  const keepaliveMs = init.keepaliveMs ?? DEFAULT_KEEPALIVE_MS
  const log = init.logger
  let position: MapPosition | undefined = init.resumeFrom
  let state: MapSessionState = 'disconnected'
  let ws: WebSocket | undefined
  let reconnectTimer: NodeJS.Timeout | undefined
  let keepaliveTimer: NodeJS.Timeout | undefined
  let endpointTimer: NodeJS.Timeout | undefined
  let sentEndpoints = ''
  let closed = false
  /** wantFull drops the resume point: after a seq gap the next hello asks for a full map */
  let wantFull = false

  function setState (s: MapSessionState): void {
    if (s === state) return
    state = s
    ev.emit('state', s)
  }

  function connect (): void {
    if (closed) return
    setState('connecting')
    let sock: WebSocket
    try { sock = init.openSocket() } catch (e) {
      log?.warn({ err: String((e as Error).message) }, 'cannot open map session')
      scheduleReconnect()
      return
    }
    ws = sock
    let lastHeard = Date.now()
    let helloSent = false
    let gotMap = false
    const heard = (): void => { lastHeard = Date.now() }

    sock.on('pong', heard)
    sock.on('ping', heard)
    sock.on('message', (data: WebSocket.RawData) => {
      heard()
      let msg: ServerMessage
      try { msg = parseJson(ServerMessage, data.toString(), 'map message') } catch (e) {
        log?.warn({ err: (e as Error).message }, 'controller sent a malformed map message; reconnecting')
        ev.emit('message', 'malformed')
        sock.terminate()
        return
      }
      ev.emit('message', msg.type)
      switch (msg.type) {
        case 'challenge': {
          if (helloSent) return
          helloSent = true
          const endpoints = init.endpoints()
          // An older controller gets its own version, and sends only what this node reads either way.
          const version = negotiateVersion(msg.version)
          const hello: MapHello = {
            type: 'hello',
            version,
            machineKey: init.machineKey.publicKey,
            nonce: msg.nonce,
            signature: signMessage(init.machineKey.secretKey, MAP_DOMAIN, mapSigningPayload(msg.nonce, init.machineKey.publicKey, version)),
            endpoints,
            // routes and posture attributes came with version 2: an older controller refuses them
            ...(init.routes !== undefined && version >= ROUTES_AND_PINS_VERSION ? { routes: init.routes() } : {}),
            ...(init.attrs !== undefined && version >= ROUTES_AND_PINS_VERSION ? { attrs: init.attrs() } : {}),
            ...(position !== undefined && !wantFull ? { resume: { session: position.session, seq: position.seq } } : {})
          }
          sentEndpoints = endpoints.join(',')
          sock.send(JSON.stringify(hello))
          return
        }
        case 'map': {
          gotMap = true
          wantFull = false
          position = { session: msg.session, seq: msg.seq, netmap: msg.netmap }
          backoff.reset()
          setState('connected')
          ev.emit('netmap', { netmap: msg.netmap, full: true, session: msg.session, seq: msg.seq } satisfies NetmapUpdate)
          return
        }
        case 'delta': {
          if (position === undefined || msg.seq !== position.seq + 1) {
            log?.warn({ have: position?.seq, got: msg.seq }, 'map delta out of sequence; reconnecting for a full map')
            wantFull = true
            sock.terminate()
            return
          }
          if (!gotMap) {
            // A resumed session continues with deltas only.
            gotMap = true
            backoff.reset()
            setState('connected')
          }
          position = { session: position.session, seq: msg.seq, netmap: applyDelta(position.netmap, msg) }
          ev.emit('netmap', { netmap: position.netmap, full: false, session: position.session, seq: msg.seq } satisfies NetmapUpdate)
          return
        }
        case 'relay-grant':
        case 'relay-revoke':
          ev.emit('relay', msg)
          return
        case 'call-me-maybe':
          ev.emit('call-me-maybe', msg)
          return
        case 'error': {
          const err = new WarrenError(msg.code, `controller: ${msg.message}`, { status: 502 })
          log?.warn({ code: msg.code, message: msg.message }, 'controller refused the map session')
          ev.emit('server-error', err)
        }
      }
    })
    sock.on('open', () => {
      keepaliveTimer = setInterval(() => {
        if (Date.now() - lastHeard > 3 * keepaliveMs) {
          log?.warn({ silentMs: Date.now() - lastHeard }, 'controller went silent; reconnecting')
          sock.terminate()
          return
        }
        try { sock.ping() } catch { /* closing */ }
      }, keepaliveMs)
      keepaliveTimer.unref()
    })
    sock.on('error', (e: Error) => {
      log?.debug({ err: e.message }, 'map session socket error')
      ev.emit('socket-error', e)
    })
    sock.on('close', () => {
      clearInterval(keepaliveTimer)
      if (ws === sock) ws = undefined
      if (closed) return
      setState('disconnected')
      scheduleReconnect()
    })
  }

  function scheduleReconnect (): void {
    if (closed || reconnectTimer !== undefined) return
    const delay = backoff.next()
    log?.info({ delayMs: delay }, 'map session reconnecting')
    reconnectTimer = setTimeout(() => {
      reconnectTimer = undefined
      connect()
    }, delay)
  }

  function checkEndpoints (): void {
    if (ws === undefined || state !== 'connected') return
    const endpoints = init.endpoints()
    const key = endpoints.join(',')
    if (key === sentEndpoints) return
    sentEndpoints = key
    const msg: ClientEndpoints = { type: 'endpoints', endpoints }
    ws.send(JSON.stringify(msg))
    log?.info({ count: endpoints.length }, 'local endpoints changed; told the controller')
  }

  /** sendMessage sends a message outside the hello and endpoint reports; false when not connected. */
  function sendMessage (msg: ClientMessage): boolean {
    if (ws === undefined || state !== 'connected') return false
    ws.send(JSON.stringify(msg))
    return true
  }

  endpointTimer = setInterval(checkEndpoints, init.endpointPollMs ?? 30_000)
  endpointTimer.unref()

  const session = Object.defineProperties(ev, {
    state: { get: () => state },
    position: { get: () => position },
    checkEndpoints: { value: checkEndpoints },
    sendRelayRequest: { value: (msg: RelayRequest | RelayRelease): boolean => sendMessage(msg) },
    sendCallMeMaybe: { value: (peerWgKey: string): boolean => sendMessage({ type: 'call-me-maybe', peer: peerWgKey } satisfies CallMeMaybe) },
    sendLogout: { value: (): boolean => sendMessage({ type: 'logout' } satisfies Logout) },
    close: {
      value () {
        if (closed) return
        closed = true
        clearTimeout(reconnectTimer)
        clearInterval(endpointTimer)
        clearInterval(keepaliveTimer)
        ws?.terminate()
        ws = undefined
        setState('closed')
      }
    }
  })
  queueMicrotask(connect)
  return session as MapSession
}
