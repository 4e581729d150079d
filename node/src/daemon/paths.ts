import type { Logger } from 'pino'
import type { Netmap } from '@warren/protocol'
import type { CommandRunner } from '../runner/index.js'
import type { MapSession } from '../control/map-session.js'
import { createPathService, type PathService } from '../nat/path-service.js'
import type { PathTimings, RelayIdentity, SelfEndpointsOptions } from '../nat/path-manager.js'
import type { PeerPath, SharedPort, TlsRelayClient, UdpRelayClient } from '../nat/types.js'
import type { DataPlane } from './data-plane.js'

/** SharedPortContext is what opening the shared WireGuard port needs. */
export interface SharedPortContext {
  wgPort: number
  interfaceName: string
  /** this node's mesh IPv4 address */
  meshIpv4: string
  runner: CommandRunner
  logger: Logger
}

/** RelayClientContext is what a relay client gets from the daemon. */
export interface RelayClientContext {
  port: SharedPort
  /** our WireGuard private key (base64); never logged */
  privateKey: string
  /** the newest map (its `nat.relays` lists the relays) */
  netmap: () => Netmap | undefined
  /** the map session to the controller now (relay requests and grants travel on it) */
  session: () => MapSession | undefined
  logger: Logger
}

/**
 * PathsInit chooses the NAT parts of a daemon. Without `sharedPort` nothing is probed and
 * every peer keeps the map's first endpoint, as before; the relay clients are optional.
 */
export interface PathsInit {
  sharedPort?: (ctx: SharedPortContext) => Promise<SharedPort>
  udpRelay?: (ctx: RelayClientContext) => UdpRelayClient & RelayIdentity
  tlsRelay?: (ctx: RelayClientContext) => TlsRelayClient & RelayIdentity
  timings?: Partial<PathTimings>
}

/** DaemonPaths runs path selection for a daemon and moves WireGuard endpoints when paths change. */
export interface DaemonPaths {
  /** update gives the path service a newly applied map, starting it (and the shared port) on first use */
  update: (netmap: Netmap) => Promise<void>
  path: (peerKey: string) => PeerPath | undefined
  /**
   * reported hears the candidates the map session reports to the controller (polled: only
   * changes count); `settled: false` while STUN is still finding our mapped address
   */
  reported: (endpoints: string[], opts?: SelfEndpointsOptions) => void
  /** port is the shared WireGuard port while paths run (STUN and relay binds use it too) */
  port: () => SharedPort | undefined
  /** stop ends probing and closes the relay clients and the shared port (down, or daemon exit) */
  stop: () => Promise<void>
}

interface Running {
  port: SharedPort
  service: PathService
  udp?: UdpRelayClient
  tls?: TlsRelayClient
}

/** DaemonPathsDeps are the daemon parts path selection uses. */
export interface DaemonPathsDeps {
  dataPlane: DataPlane
  privateKey: string
  interfaceName: string
  runner: CommandRunner
  logger: Logger
  /** the current map session, if any */
  session: () => MapSession | undefined
}

/** createDaemonPaths returns the daemon's path selection; it starts nothing until the first map. */
export function createDaemonPaths (deps: DaemonPathsDeps, init: PathsInit): DaemonPaths {
  const { dataPlane, logger: log } = deps
  let running: Running | undefined
  let starting: Promise<Running | undefined> | undefined
  let netmap: Netmap | undefined
  let pushing: Promise<void> | undefined
  let dirty = false
  let reported: { endpoints: string[], opts?: SelfEndpointsOptions } = { endpoints: [] }
  /** generation changes on every stop, so a start that finishes after it is not used */
  let generation = 0

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

  async function start (map: Netmap): Promise<Running | undefined> {
    if (init.sharedPort === undefined) return undefined
    const port = await init.sharedPort({ wgPort: dataPlane.listenPort(), interfaceName: deps.interfaceName, meshIpv4: map.self.ipv4, runner: deps.runner, logger: log.child({ part: 'shared-port' }) })
    const ctx: RelayClientContext = { port, privateKey: deps.privateKey, netmap: () => netmap, session: deps.session, logger: log }
    const udp = init.udpRelay?.({ ...ctx, logger: log.child({ part: 'udp-relay' }) })
    const tls = init.tlsRelay?.({ ...ctx, logger: log.child({ part: 'tls-relay' }) })
    const service = createPathService({
      port,
      privateKey: deps.privateKey,
      ...(udp !== undefined ? { udpRelay: udp } : {}),
      ...(tls !== undefined ? { tlsRelay: tls } : {}),
      ...(init.timings !== undefined ? { timings: init.timings } : {}),
      logger: log.child({ part: 'paths' })
    })
    service.onChange(push)
    return { port, service, ...(udp !== undefined ? { udp } : {}), ...(tls !== undefined ? { tls } : {}) }
  }

  return {
    async update (map) {
      netmap = map
      if (running === undefined) {
        const gen = generation
        starting ??= start(map).catch((e: unknown) => {
          log.error({ err: (e as Error).message }, 'could not open the shared WireGuard port: peers keep the endpoints from the map')
          return undefined
        }).finally(() => { starting = undefined })
        const r = await starting
        // stopped meanwhile: the new parts are closed by that stop
        if (gen !== generation) return
        running = r
      }
      if (running === undefined) return
      // The egress addresses may have changed with the interfaces (a system port re-reads them).
      const port: SharedPort & { refresh?: () => Promise<boolean> } = running.port
      await port.refresh?.().catch((e: unknown) => log.warn({ err: (e as Error).message }, 'could not update the shared port\'s egress addresses'))
      running.service.setSelfEndpoints(reported.endpoints, reported.opts)
      running.service.setNetmap(map)
    },
    reported (endpoints, opts) {
      reported = { endpoints, ...(opts !== undefined ? { opts } : {}) }
      running?.service.setSelfEndpoints(endpoints, opts)
    },
    path: key => running?.service.path(key),
    port: () => running?.port,
    async stop () {
      generation++
      const r = running ?? await starting
      running = undefined
      netmap = undefined
      if (r === undefined) return
      r.service.close()
      await pushing
      const closes = [async () => await r.udp?.close(), async () => await r.tls?.close(), async () => await r.port.close()]
      for (const close of closes) await close().catch((e: unknown) => log.warn({ err: (e as Error).message }, 'closing a NAT part failed'))
    }
  }
}
