import type { Logger } from 'pino'
import type { Netmap, RelayInfo } from '@warren/protocol'
import type { CommandRunner } from '../runner/index.js'
import type { MapSession } from '../control/map-session.js'
import { createPathService, type PathService } from '../nat/path-service.js'
import type { PathTimings, RelayIdentity } from '../nat/path-manager.js'
import type { PeerPath, SharedPort, TlsRelayClient, UdpRelayClient } from '../nat/types.js'
import type { DataPlane } from './data-plane.js'

/** RelayClientContext is what a relay client gets from the daemon. */
export interface RelayClientContext {
  /** the shared WireGuard port (relay binds leave from it) */
  port: SharedPort
  /** our WireGuard private key (base64); never logged */
  privateKey: string
  /** the newest map (its `nat.relays` lists the relays) */
  netmap: () => Netmap | undefined
  /** the map session to the controller now (relay requests and grants travel on it) */
  session: () => MapSession | undefined
  runner: CommandRunner
  logger: Logger
}

/**
 * PathsInit plugs the optional parts into a daemon's path selection: relay clients (made
 * when paths start, closed when they stop), timings, and the shared port when it is not
 * the data plane's (tests with a fake data plane).
 */
export interface PathsInit {
  /** udpRelay makes the kernel-relay client (undefined: none, say without a map session) */
  udpRelay?: (ctx: RelayClientContext) => (UdpRelayClient & RelayIdentity) | undefined
  /** tlsRelay makes the TLS relay client (undefined: none); followMap hears each new map's relays */
  tlsRelay?: (ctx: RelayClientContext) => (TlsRelayClient & RelayIdentity & MapRelaysFollower) | undefined
  timings?: Partial<PathTimings>
  /** sharedPort gives the shared WireGuard port; default: the data plane's, once open */
  sharedPort?: () => SharedPort | undefined
}

/** MapRelaysFollower is a relay client that picks its relay from the map's relays. */
export interface MapRelaysFollower {
  followMap?: (relays: readonly RelayInfo[]) => void
}

/** DaemonPaths runs path selection for a daemon and moves WireGuard endpoints when paths change. */
export interface DaemonPaths {
  /** update gives the path service a newly applied map, starting it on the shared port once that is open */
  update: (netmap: Netmap) => Promise<void>
  path: (peerKey: string) => PeerPath | undefined
  /** calledBy: a peer started a direct-path burst toward us (its PeerCallMeMaybe came on the map session) */
  calledBy: (peerKey: string) => void
  /** reported hears the candidates the map session reports to the controller (polled: only changes count) */
  reported: (endpoints: string[]) => void
  /** stop ends probing and closes the relay clients (down, or daemon exit); the port is the data plane's */
  stop: () => Promise<void>
}

interface Running {
  port: SharedPort
  service: PathService
  udp?: UdpRelayClient
  tls?: TlsRelayClient & MapRelaysFollower
}

/** DaemonPathsDeps are the daemon parts path selection uses. */
export interface DaemonPathsDeps {
  dataPlane: DataPlane
  privateKey: string
  runner: CommandRunner
  logger: Logger
  /** the current map session, if any */
  session: () => MapSession | undefined
  /** settled says whether our own candidates are known (netcheck ran, or there is no STUN server) */
  settled: () => boolean
}

/** createDaemonPaths returns the daemon's path selection; it starts nothing until a map and the shared port exist. */
export function createDaemonPaths (deps: DaemonPathsDeps, init: PathsInit): DaemonPaths {
  const { dataPlane, logger: log } = deps
  const portNow = init.sharedPort ?? (() => dataPlane.sharedPort?.())
  let running: Running | undefined
  let netmap: Netmap | undefined
  let pushing: Promise<void> | undefined
  let dirty = false
  let reported: string[] = []

  /** push hands the chosen endpoints to the data plane, one push at a time, the newest winning. */
  function push (): void {
    dirty = true
    pushing ??= (async () => {
      while (dirty && running !== undefined) {
        dirty = false
        await dataPlane.setPeerEndpoints(running.service.endpoints())
          .catch((e: unknown) => log.warn({ err: (e as Error).message }, 'could not move WireGuard endpoints to new paths'))
      }
    })().finally(() => { pushing = undefined })
  }

  /**
   * RECONCILE_MS: chosen endpoints are put back this often when WireGuard roamed away from
   * them (a relay port the peer still sent from while it switched): only such peers change.
   */
  const RECONCILE_MS = 5000
  let reconcile: NodeJS.Timeout | undefined

  function start (port: SharedPort): Running {
    clearInterval(reconcile)
    reconcile = setInterval(push, RECONCILE_MS)
    reconcile.unref()
    const ctx: RelayClientContext = { port, privateKey: deps.privateKey, netmap: () => netmap, session: deps.session, runner: deps.runner, logger: log }
    const udp = init.udpRelay?.({ ...ctx, logger: log.child({ part: 'udp-relay' }) })
    const tls = init.tlsRelay?.({ ...ctx, logger: log.child({ part: 'tls-relay' }) })
    const service = createPathService({
      port,
      privateKey: deps.privateKey,
      ...(udp !== undefined ? { udpRelay: udp } : {}),
      ...(tls !== undefined ? { tlsRelay: tls } : {}),
      ...(init.timings !== undefined ? { timings: init.timings } : {}),
      settled: deps.settled,
      // A session that is down drops the call; the peer's retry runs out about when ours does (see PathTimings.retryMs).
      callMeMaybe: peer => { deps.session()?.sendCallMeMaybe(peer) },
      logger: log
    })
    service.onChange(push)
    service.setSelfEndpoints(reported)
    log.info('path selection started on the shared WireGuard port')
    return { port, service, ...(udp !== undefined ? { udp } : {}), ...(tls !== undefined ? { tls } : {}) }
  }

  async function stop (): Promise<void> {
    const r = running
    running = undefined
    clearInterval(reconcile)
    if (r === undefined) return
    r.service.close()
    await pushing
    const closes = [async () => await r.udp?.close(), async () => await r.tls?.close()]
    for (const close of closes) await close().catch((e: unknown) => log.warn({ err: (e as Error).message }, 'closing a relay client failed'))
  }

  return {
    async update (map) {
      netmap = map
      const port = portNow()
      // The data plane opens the port again when the mesh address or WireGuard port moved.
      if (running !== undefined && running.port !== port) await stop()
      if (port === undefined) return
      running ??= start(port)
      running.tls?.followMap?.(map.nat?.relays ?? [])
      running.service.setNetmap(map)
    },
    path: key => running?.service.path(key),
    calledBy: key => running?.service.handleCallMeMaybe(key),
    reported (endpoints) {
      reported = endpoints
      running?.service.setSelfEndpoints(endpoints)
    },
    async stop () {
      netmap = undefined
      await stop()
    }
  }
}
