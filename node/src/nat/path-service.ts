import type { Logger } from 'pino'
import type { Netmap } from '@warren/protocol'
import { createDisco, type Disco } from './disco.js'
import { createPathManager, type PathManager, type PathTimings, type RelayIdentity } from './path-manager.js'
import type { PeerPath, SharedPort, TlsRelayClient, UdpRelayClient } from './types.js'

/** PathServiceInit is what a daemon gives the path service. */
export interface PathServiceInit {
  port: SharedPort
  /** our WireGuard private key (base64); never logged */
  privateKey: string
  udpRelay?: UdpRelayClient & RelayIdentity
  tlsRelay?: TlsRelayClient & RelayIdentity
  timings?: Partial<PathTimings>
  /** settled says whether our own candidates are known (see PathManagerInit.settled) */
  settled?: () => boolean
  /** callMeMaybe tells a peer we start a burst toward it (see PathManagerInit.callMeMaybe) */
  callMeMaybe?: (peerKey: string) => void
  logger?: Logger
}

/**
 * PathService runs a PathManager with real timers over Disco on the shared WireGuard
 * port: it answers and sends probes and says when a peer's WireGuard endpoint should move.
 */
export interface PathService {
  /** setNetmap takes the peers and their candidates from a map */
  setNetmap: (netmap: Netmap) => void
  /** setSelfEndpoints tells the candidates we report to the controller (see PathManager.setSelfEndpoints) */
  setSelfEndpoints: (endpoints: string[]) => void
  /** handleCallMeMaybe: a peer started a burst toward us (see PathManager.handleCallMeMaybe) */
  handleCallMeMaybe: (peerKey: string) => void
  path: (peerKey: string) => PeerPath | undefined
  /** endpoints is the WireGuard endpoint per peer that has a path */
  endpoints: () => Map<string, string>
  /** onChange fires after any peer's path changed */
  onChange: (handler: () => void) => () => void
  close: () => void
}

/** createPathService starts probing; nothing is sent until setNetmap names peers. */
export function createPathService (init: PathServiceInit): PathService {
  const log = init.logger
  const disco: Disco = createDisco({
    port: init.port,
    privateKey: init.privateKey,
    onError: e => log?.debug({ err: e.message }, 'a path probe could not be sent')
  })
  const manager: PathManager = createPathManager({
    probes: disco,
    now: () => performance.now(),
    ...(init.udpRelay !== undefined ? { udpRelay: init.udpRelay } : {}),
    ...(init.tlsRelay !== undefined ? { tlsRelay: init.tlsRelay } : {}),
    ...(init.timings !== undefined ? { timings: init.timings } : {}),
    ...(init.settled !== undefined ? { settled: init.settled } : {}),
    ...(init.callMeMaybe !== undefined ? { callMeMaybe: init.callMeMaybe } : {}),
    onError: (peer, e) => log?.warn({ peer, err: e.message }, 'the TLS relay gave no endpoint for a peer')
  })
  let timer: NodeJS.Timeout | undefined
  let closed = false

  /** run does what is due and sleeps until the next due time (or the next event). */
  function run (): void {
    if (closed) return
    clearTimeout(timer)
    const wait = manager.tick()
    if (Number.isFinite(wait)) {
      timer = setTimeout(run, Math.max(wait, 10))
      timer.unref()
    }
  }
  // Pongs, pings and relay changes may make work due sooner: run after each, once per turn.
  let queued = false
  function soon (): void {
    if (queued || closed) return
    queued = true
    queueMicrotask(() => { queued = false; run() })
  }
  const offs = [
    disco.onPing((peer, from) => { manager.handlePing(peer, from); soon() }),
    disco.onPong(pong => { manager.handlePong(pong); soon() }),
    manager.onChange(soon)
  ]

  return {
    setNetmap (netmap) {
      const peers = netmap.peers.filter(p => p.wgKey !== netmap.self.wgKey).map(p => ({ wgKey: p.wgKey, endpoints: p.endpoints, online: p.online }))
      disco.setPeers(peers.map(p => p.wgKey))
      manager.setPeers(peers)
      soon()
    },
    setSelfEndpoints (endpoints) {
      manager.setSelfEndpoints(endpoints)
      soon()
    },
    handleCallMeMaybe (peerKey) {
      manager.handleCallMeMaybe(peerKey)
      soon()
    },
    path: key => manager.path(key),
    endpoints: () => manager.endpoints(),
    onChange: h => manager.onChange(h),
    close () {
      closed = true
      clearTimeout(timer)
      for (const off of offs) off()
      manager.close()
      disco.close()
    }
  }
}
