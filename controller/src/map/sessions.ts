import type { WebSocket } from 'ws'
import type { Node } from '@warren/protocol'
import type { MapNodeSource, MapLogger, NodePresence } from './types.js'
import type { MapMetrics } from './metrics.js'
import type { MapFanout, FanoutSession } from './fanout.js'
import type { MapWire } from './wire.js'
import { NO_POLICY_CHANGE, type PeerReader } from './mesh-policy.js'
import { checkEndpoints } from './endpoints.js'
import { acceptMapSocket, mayConnect, expiredRefusal, deletedRefusal, REPLACED, SHUTTING_DOWN, type HelloFacts, type MapRefusal } from './handshake.js'

export interface MapSessionsOptions {
  source: MapNodeSource
  peers: PeerReader
  fanout: MapFanout
  wire: MapWire
  metrics: MapMetrics
  helloTimeoutMs: number
  resumeWindowMs: number
  ephemeralTimeoutMs: number
  /** relayRequest takes a node's relay requests */
  relayRequest: (nodeId: string, peer: string) => void
  /** relayRelease takes a node's relay releases */
  relayRelease: (nodeId: string, peer: string) => void
  /** callMeMaybe takes a node's calls to a peer (see CallMeMaybe) */
  callMeMaybe: (nodeId: string, peer: string) => void
  /** account records how many sessions one change touched and how long it took */
  account: (touched: number, started: bigint) => void
  log?: MapLogger
}

/**
 * MapSessions runs the sockets of the map service: the challenge and signed hello, one
 * session per node (a newer one replaces an older one; a resume within the window picks
 * up where it left), the node's presence (online, endpoints), and the end of sessions
 * whose node was deleted or expired, with ephemeral nodes deleted once they stay away.
 */
export interface MapSessions {
  /** accept speaks the map protocol on a new socket */
  accept: (ws: WebSocket) => void
  /** socketOf is the socket attached to a node's session, if one is */
  socketOf: (nodeId: string) => WebSocket | undefined
  /** nodeChanged ends the session of a node that may no longer connect and arms its ephemeral timer while away */
  nodeChanged: (node: Node) => void
  /** nodeRemoved ends the deleted node's session */
  nodeRemoved: (node: Node) => void
  connected: () => number
  /** close ends every session with 1001 and stops timers */
  close: () => void
}

const sameList = (a: readonly string[], b: readonly string[]): boolean => a.length === b.length && a.every((x, i) => x === b[i])

/** settleWrite logs and counts a failed write to the source (its methods may return a promise). */
function settleWrite (p: unknown, what: string, metrics: MapMetrics, log: MapLogger | undefined): void {
  if (p !== null && typeof p === 'object' && typeof (p as Promise<unknown>).then === 'function') {
    (p as Promise<unknown>).then(undefined, (err: unknown) => {
      metrics.errors.labels('state_write').inc()
      log?.error({ err }, `map service could not ${what}`)
    })
  }
}

export function createMapSessions (opts: MapSessionsOptions): MapSessions {
  const { source, fanout, wire, metrics, log } = opts
  const sockets = new Map<string, WebSocket>()
  const dropTimers = new Map<string, NodeJS.Timeout>()
  const ephemeralTimers = new Map<string, NodeJS.Timeout>()

  const settle = (p: unknown, what: string): void => settleWrite(p, what, metrics, log)

  /**
   * setPresence applies what a session says about its node: the fan-out sends it to the
   * node's peers at once, and the source records it without an event, so the change
   * reaches each peer exactly once. lastSeen alone (a reconnect of an online node) is
   * recorded but announces nothing.
   */
  function setPresence (nodeId: string, change: { online?: boolean, endpoints?: string[] }): void {
    const cur = fanout.node(nodeId)
    if (cur === undefined) return
    const presence: NodePresence = {}
    if (change.online !== undefined) Object.assign(presence, { online: change.online, lastSeen: new Date().toISOString() })
    if (change.endpoints !== undefined && !sameList(change.endpoints, cur.endpoints)) presence.endpoints = change.endpoints
    if (presence.online === undefined && presence.endpoints === undefined) return
    settle(source.recordPresence(nodeId, presence), 'record a node\'s presence')
    if (presence.online === cur.online && presence.endpoints === undefined) return
    const started = process.hrtime.bigint()
    const member = opts.peers.isMember(nodeId)
    opts.account(fanout.nodeChanged({ ...cur, ...presence }, { member, wasMember: member, policy: NO_POLICY_CHANGE }), started)
  }

  function armEphemeral (nodeId: string): void {
    clearTimeout(ephemeralTimers.get(nodeId))
    const timer = setTimeout(() => {
      ephemeralTimers.delete(nodeId)
      const n = fanout.node(nodeId)
      if (n === undefined || sockets.has(nodeId)) return
      log?.info({ node: nodeId, name: n.name, awayMs: opts.ephemeralTimeoutMs }, 'deleting ephemeral node that stayed away')
      settle(source.deleteNode(nodeId, 'map-server'), 'delete an ephemeral node')
    }, opts.ephemeralTimeoutMs)
    timer.unref()
    ephemeralTimers.set(nodeId, timer)
  }

  function detachSocket (nodeId: string): void {
    if (!sockets.delete(nodeId)) return
    metrics.connected.dec()
  }

  /** endSession tells a node why it is being dropped, closes it and forgets its state. */
  function endSession (s: FanoutSession, refusal: MapRefusal): void {
    clearTimeout(dropTimers.get(s.nodeId))
    dropTimers.delete(s.nodeId)
    const ws = sockets.get(s.nodeId)
    fanout.forgetSession(s)
    detachSocket(s.nodeId)
    if (ws !== undefined) wire.refuse(ws, refusal)
  }

  function onDisconnect (s: FanoutSession, ws: WebSocket): void {
    if (sockets.get(s.nodeId) !== ws || fanout.session(s.nodeId) !== s) return
    detachSocket(s.nodeId)
    fanout.setConnected(s, false)
    const n = fanout.node(s.nodeId)
    if (n !== undefined) {
      setPresence(s.nodeId, { online: false })
      if (n.ephemeral) armEphemeral(s.nodeId)
    }
    clearTimeout(dropTimers.get(s.nodeId))
    const timer = setTimeout(() => {
      dropTimers.delete(s.nodeId)
      if (fanout.session(s.nodeId) === s && !s.connected) fanout.forgetSession(s)
    }, opts.resumeWindowMs)
    timer.unref()
    dropTimers.set(s.nodeId, timer)
  }

  /**
   * startSession attaches an authenticated socket to its node's session: it replaces an
   * older socket, resumes the session when the hello names it at its current seq (or
   * starts a new one), records the node online, and sends the first message.
   */
  function startSession (ws: WebSocket, node: Node, hello: HelloFacts, resume?: { session: string, seq: number }): FanoutSession {
    const { endpoints, routes } = hello
    if (fanout.node(node.id) === undefined) fanout.loadNodes([node])
    const old = sockets.get(node.id)
    if (old !== undefined) {
      detachSocket(node.id)
      wire.refuse(old, REPLACED)
    }
    clearTimeout(dropTimers.get(node.id))
    dropTimers.delete(node.id)
    clearTimeout(ephemeralTimers.get(node.id))
    ephemeralTimers.delete(node.id)

    const { session, resumed } = fanout.openSession(node.id, resume)
    fanout.setConnected(session, false)
    // Peers hear of the node online before its own first message, which already shows it.
    setPresence(node.id, { online: true, endpoints })
    const first = resumed ? fanout.resumeDelta(session) : fanout.fullMap(session)
    sockets.set(node.id, ws)
    metrics.connected.inc()
    fanout.setConnected(session, true)
    wire.keepAlive(ws, node.id)
    wire.setVersion(ws, hello.version)
    wire.send(ws, resumed ? 'delta' : 'map', first, node.id)
    // A change of advertised routes is a change of the node's record: it comes back as an event.
    if (source.advertiseRoutes !== undefined && !sameList(routes, node.advertisedRoutes ?? [])) {
      settle(source.advertiseRoutes(node.id, routes), 'record the routes a node advertises')
    }
    // so is a change of its posture attributes, which may change what its peers let in
    if (hello.attrs !== undefined && source.reportHostAttrs !== undefined) {
      settle(source.reportHostAttrs(node.id, hello.attrs), 'record the posture attributes a node reports')
    }
    return session
  }

  function onEndpoints (s: FanoutSession, ws: WebSocket, endpoints: string[]): void {
    let checked: string[]
    try {
      checked = checkEndpoints(endpoints)
    } catch (err) {
      wire.sendError(ws, (err as { code: string }).code, (err as Error).message)
      return
    }
    setPresence(s.nodeId, { endpoints: checked })
  }

  for (const n of source.listNodes()) if (n.ephemeral) armEphemeral(n.id)

  return {
    accept: ws => acceptMapSocket(ws, {
      helloTimeoutMs: opts.helloTimeoutMs,
      nodeByMachineKey: key => source.nodeByMachineKey(key),
      send: (socket, text) => wire.send(socket, 'challenge', text),
      refuse: (socket, refusal) => wire.refuse(socket, refusal),
      start: startSession,
      endpoints: onEndpoints,
      relayRequest: (s, peer) => { opts.relayRequest(s.nodeId, peer) },
      relayRelease: (s, peer) => { opts.relayRelease(s.nodeId, peer) },
      callMeMaybe: (s, peer) => { opts.callMeMaybe(s.nodeId, peer) },
      logout: s => {
        const n = fanout.node(s.nodeId)
        if (n === undefined || !n.ephemeral) {
          log?.info({ node: s.nodeId }, 'logout from a node that is not ephemeral: kept')
          return
        }
        log?.info({ node: s.nodeId, name: n.name }, 'deleting ephemeral node that logged out')
        settle(source.deleteNode(s.nodeId, `node:${n.name}`), 'delete an ephemeral node that logged out')
      },
      disconnect: onDisconnect,
      ...(log !== undefined ? { log } : {})
    }),
    socketOf: nodeId => sockets.get(nodeId),
    nodeChanged (node) {
      const own = fanout.session(node.id)
      if (own !== undefined && !mayConnect(node)) endSession(own, expiredRefusal(node))
      if (node.ephemeral && !sockets.has(node.id) && !ephemeralTimers.has(node.id)) armEphemeral(node.id)
    },
    nodeRemoved (node) {
      clearTimeout(ephemeralTimers.get(node.id))
      ephemeralTimers.delete(node.id)
      const own = fanout.session(node.id)
      if (own !== undefined) endSession(own, deletedRefusal(node))
    },
    connected: () => sockets.size,
    close () {
      for (const t of [...dropTimers.values(), ...ephemeralTimers.values()]) clearTimeout(t)
      for (const ws of sockets.values()) wire.refuse(ws, SHUTTING_DOWN)
    }
  }
}
