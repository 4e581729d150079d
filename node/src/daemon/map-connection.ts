import type { PeerCallMeMaybe, WarrenError } from '@warren/protocol'
import { createMapSession, type NetmapUpdate } from '../control/map-session.js'
import { createBackoff, type BackoffInit } from '../control/backoff.js'
import { hostAttrs } from '../control/host-attrs.js'
import type { SavedLogin, SavedMap } from './state-store.js'
import type { DaemonContext } from './daemon-context.js'
import type { MapApplier } from './map-applier.js'

/** Login-ending controller answers: the node must join again with an auth key. */
const GONE_CODES = new Set(['unknown_node', 'node_deleted', 'node_expired', 'not_found', 'node_not_found'])

/** MapConnectionInit: how a map session is tuned, and where its maps go. */
export interface MapConnectionInit {
  applier: MapApplier
  /** endpoints lists where peers may reach us, for a given WireGuard port */
  endpoints: (listenPort: number) => string[]
  backoff?: BackoffInit
  keepaliveMs?: number
}

/**
 * connectMap opens the map session for a login and turns its events into state, health
 * and metrics; events from a session older than the current generation are ignored.
 */
export function connectMap (d: DaemonContext, init: MapConnectionInit, l: SavedLogin, resumeFrom: SavedMap | undefined): void {
  const { metrics, health } = d
  const gen = d.generation
  d.transport = d.makeTransport({ url: l.controller, ...(l.fingerprint !== undefined ? { fingerprint: l.fingerprint } : {}) })
  const t = d.transport
  const s = createMapSession({
    // Relative on purpose: it resolves under the controller URL whether or not its path ends in '/'.
    openSocket: () => t.webSocket('v1/machine/map'),
    machineKey: d.keys.machine,
    endpoints: () => init.endpoints(d.dataPlane.listenPort()),
    routes: () => l.routing?.advertiseRoutes ?? [],
    attrs: hostAttrs,
    ...(resumeFrom !== undefined ? { resumeFrom } : {}),
    backoff: createBackoff(init.backoff),
    ...(init.keepaliveMs !== undefined ? { keepaliveMs: init.keepaliveMs } : {}),
    logger: d.log.child({ part: 'map' })
  })
  d.session = s
  s.on('netmap', (u: NetmapUpdate) => init.applier.queue(u, gen))
  s.on('call-me-maybe', (msg: PeerCallMeMaybe) => { if (gen === d.generation) d.paths.calledBy(msg.peer) })
  s.on('message', (type: string) => metrics.mapMessages.labels(type).inc())
  let lastSocketError = ''
  s.on('socket-error', (e: Error) => { lastSocketError = e.message })
  s.on('state', (st: string) => {
    if (gen !== d.generation) return
    metrics.controllerConnected.set(st === 'connected' ? 1 : 0)
    if (st === 'connected') {
      health.delete('controller')
      lastSocketError = ''
    } else if (st === 'disconnected') {
      const why = lastSocketError === '' ? '' : ` (${lastSocketError})`
      health.set('controller', `not connected to the controller at ${l.controller}${why}; ${d.netmap !== undefined ? 'the mesh keeps working with the last network map' : 'retrying'}`)
    }
  })
  s.on('server-error', (e: WarrenError) => {
    if (gen !== d.generation) return
    metrics.errors.labels('controller').inc()
    if (GONE_CODES.has(e.code)) {
      // The controller no longer knows this node: stop retrying, keep the data plane (fail-closed).
      // An expired node's refusal already says how to log in again.
      health.set('login', e.code === 'node_expired' ? e.message : `${e.message} (run 'warren up --auth-key KEY')`)
      d.state = 'NeedsLogin'
      d.changes.notify('state')
      s.close()
      if (d.session === s) d.session = undefined
    } else {
      health.set('controller', e.message)
    }
  })
}

/** stopMap ends the current session and bumps the generation, so its late maps are dropped. */
export function stopMap (d: DaemonContext, applier: MapApplier): void {
  d.generation++
  d.session?.close()
  d.session = undefined
  d.transport?.close()
  d.transport = undefined
  applier.cancel()
}

/**
 * resumeMap runs at start: when the node was up, it applies the saved map before the
 * controller answers, so the mesh works at once, then reconnects.
 */
export async function resumeMap (d: DaemonContext, init: MapConnectionInit): Promise<void> {
  const { login, store, log } = d
  const { applier } = init
  if (login !== undefined && login.wantRunning) {
    d.state = 'Starting'
    d.changes.notify('state')
    const saved = await store.readMap().catch((e: Error) => { log.warn({ err: e.message }, 'saved network map unreadable; waiting for the controller'); return undefined })
    if (saved !== undefined) {
      log.info({ peers: saved.netmap.peers.length, seq: saved.seq }, 'restoring the last network map before the controller answers')
      applier.queue({ netmap: saved.netmap, full: true, session: saved.session, seq: saved.seq }, d.generation)
      await applier.applying
    }
    connectMap(d, init, login, saved)
  } else if (login !== undefined) {
    d.state = 'Stopped'
    d.changes.notify('state')
  }
}
