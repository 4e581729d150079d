import type http from 'node:http'
import { pino, type Logger } from 'pino'
import { createSerialQueue, LOG_REDACT_PATHS, type LocalStatus, type LocalUpRequest, type Node } from '@warren/protocol'
import { createControllerTransport, type ControllerTransport, type ControllerTransportInit } from '@warren/sdk/transport'
import { createCommandRunner, type CommandRunner } from '../runner/index.js'
import type { WireGuardMode } from '../wireguard/types.js'
import type { BackoffInit } from '../control/backoff.js'
import { localEndpoints } from '../control/endpoints.js'
import { openStateStore } from './state-store.js'
import { createDaemonMetrics, type DaemonMetrics } from './metrics.js'
import type { DataPlane, DataPlaneContext } from './data-plane.js'
import { createSystemDataPlane } from './system-data-plane.js'
import { startLocalApi, type LocalApiServer, type LocalBackend } from '../localapi/server.js'
import { createChangeFeed } from '../localapi/watch.js'
import { updateHealthForSelf, type DaemonContext } from './daemon-context.js'
import { createMapApplier } from './map-applier.js'
import { connectMap, resumeMap, stopMap, type MapConnectionInit } from './map-connection.js'
import { localStatus, localPeers } from './local-status.js'
import { joinController, type JoinTarget } from './join.js'
import { createPendingLogins } from './pending-login.js'
import { localIp, localPing, localWhois } from './node-lookup.js'
import { serveDaemonMetrics } from './daemon-metrics-server.js'
import { createNatMonitor, type NatMonitorInit } from '../nat/nat-monitor.js'
import { createDaemonPaths, type PathsInit } from './paths.js'
import { createUdpRelayClient, mapSessionRelayControl } from '../nat/udp-relay-client.js'
import { createDaemonTlsRelay } from '../nat/daemon-tls-relay.js'

/** DEFAULT_LISTEN_PORT is the WireGuard UDP port the daemon tries first. */
export const DEFAULT_LISTEN_PORT = 41641

export interface DaemonInit {
  stateDir: string
  socketPath: string
  interfaceName: string
  wireguardMode: WireGuardMode
  /** the wireguard-go program to use (default: the newest installed one) */
  wireguardGo?: string
  runner?: CommandRunner
  logger?: Logger
  /** HOST:PORT for a Prometheus endpoint besides GET /metrics on the LocalAPI; off by default */
  metricsListen?: string
  /** WireGuard UDP port to try first (default 41641; a random one if taken) */
  listenPort?: number
  /** the resolver file MagicDNS takes over (default /etc/resolv.conf) */
  resolvConfPath?: string
  /** MagicDNS port (53 unless a test needs another) */
  magicDnsPort?: number
  /** dataPlane builds the system side; tests pass a fake */
  dataPlane?: (ctx: DataPlaneContext) => DataPlane | Promise<DataPlane>
  /** transport reaches the controller; tests pass a plain-HTTP one */
  transport?: (init: ControllerTransportInit) => Pick<ControllerTransport, 'request' | 'webSocket' | 'close'>
  /** endpoints lists where peers may reach us; default: addresses of non-mesh interfaces */
  endpoints?: (listenPort: number) => string[]
  backoff?: BackoffInit
  keepaliveMs?: number
  /** nat tunes the NAT monitor (netcheck interval, STUN timeouts); tests shorten them */
  nat?: Pick<NatMonitorInit, 'intervalMs' | 'tickMs' | 'timeoutMs' | 'resolve'>
  /** paths plugs in relay clients and path timings (and a shared port, for tests with a fake data plane) */
  paths?: PathsInit
}

/**
 * Daemon is one running warrend: the glue between the control client, the data plane and
 * the LocalAPI. Every method is what one LocalAPI route does.
 */
export interface Daemon extends LocalBackend {
  readonly socketPath: string
  readonly metrics: DaemonMetrics
  /** metricsUrl is the extra Prometheus endpoint, when --metrics-listen was given */
  readonly metricsUrl?: string
  /**
   * logout leaves the mesh for good: an ephemeral node asks the controller to delete it
   * now (waiting briefly for it to happen), then everything `down` removes is removed
   */
  logout(): Promise<void>
  /**
   * close stops the daemon the way a dying process would: sockets close, but the
   * interface, routes and firewall table stay (fail-closed). Only `down` removes them.
   */
  close(): Promise<void>
}

/** startDaemon opens the state dir, restores the last map, serves the LocalAPI and reconnects if it was up. */
export async function startDaemon (init: DaemonInit): Promise<Daemon> {
  const log = init.logger ?? createDaemonLogger()
  const runner = init.runner ?? createCommandRunner()
  const metrics = createDaemonMetrics()
  const store = await openStateStore(init.stateDir)
  const keys = await store.keys()
  const dataPlane = await (init.dataPlane ?? createSystemDataPlane)({
    stateDir: init.stateDir,
    interfaceName: init.interfaceName,
    ...(init.resolvConfPath !== undefined ? { resolvConfPath: init.resolvConfPath } : {}),
    ...(init.magicDnsPort !== undefined ? { magicDnsPort: init.magicDnsPort } : {}),
    wireguardMode: init.wireguardMode,
    ...(init.wireguardGo !== undefined ? { wireguardGo: init.wireguardGo } : {}),
    privateKey: keys.wireguard.privateKey,
    listenPort: init.listenPort ?? DEFAULT_LISTEN_PORT,
    runner,
    logger: log.child({ part: 'dataplane' })
  })
  const paths = createDaemonPaths({ dataPlane, privateKey: keys.wireguard.privateKey, runner, logger: log.child({ part: 'paths' }),
    session: () => d.session,
    // Our mapped address is known once netcheck has run (or when there is no STUN server to ask).
    settled: () => nat.last() !== undefined || (d.netmap !== undefined && (d.netmap.nat?.stun ?? []).length === 0)
  }, {
    // The kernel relay's requests and grants travel on the map session.
    udpRelay: ctx => {
      const session = ctx.session()
      return session === undefined ? undefined : createUdpRelayClient({ control: mapSessionRelayControl(session), sharedPort: ctx.port, wgPrivateKey: ctx.privateKey, log: ctx.logger })
    },
    // The TLS relays (for when UDP is blocked): the map's, each pair on the one both nodes pick, else the controller's own on the HTTPS port we joined.
    tlsRelay: ctx => {
      const login = d.login
      return login === undefined
        ? undefined
        : createDaemonTlsRelay({
          controller: { url: login.controller, ...(login.fingerprint !== undefined ? { fingerprint: login.fingerprint } : {}) },
          relays: ctx.netmap()?.nat?.relays ?? [],
          machineKey: keys.machine,
          wgKey: keys.wireguard.publicKey,
          wgPort: ctx.port.wgPort,
          logger: ctx.logger
        })
    },
    ...init.paths
  })
  const d: DaemonContext = {
    log, metrics, store, keys, dataPlane, paths,
    interfaceName: init.interfaceName,
    makeTransport: init.transport ?? createControllerTransport,
    login: await store.readLogin(),
    authUrl: undefined,
    netmap: undefined,
    state: 'NeedsLogin',
    health: new Map<string, string>(),
    session: undefined,
    transport: undefined,
    generation: 0,
    changes: createChangeFeed()
  }
  const ops = createSerialQueue()
  const applier = createMapApplier(d)
  // The NAT monitor learns the WireGuard port's public mapping through the shared port;
  // it is sent to the controller among the endpoints, and re-sent when it moves.
  const nat = createNatMonitor({
    ...init.nat,
    port: () => dataPlane.sharedPort?.(),
    ...(dataPlane.refreshSharedPort !== undefined ? { refreshPort: async () => await dataPlane.refreshSharedPort!() } : {}),
    stunServers: () => d.netmap?.nat?.stun ?? [],
    controllerUrl: () => d.login?.controller,
    onChange: () => d.session?.checkEndpoints(),
    logger: log.child({ part: 'nat' })
  })
  const localOnly = init.endpoints ?? ((port: number) => localEndpoints({ meshInterface: init.interfaceName, listenPort: port }))
  const mapInit: MapConnectionInit = {
    applier,
    endpoints: (port: number) => {
      const endpoints = [...new Set([...localOnly(port), ...nat.mappedEndpoints()])].slice(0, 32)
      // Peers learn our candidates when they are reported: path probing times its punches by that.
      paths.reported(endpoints)
      return endpoints
    },
    ...(init.backoff !== undefined ? { backoff: init.backoff } : {}),
    ...(init.keepaliveMs !== undefined ? { keepaliveMs: init.keepaliveMs } : {})
  }
  const stopSession = (): void => stopMap(d, applier)

  const logins = createPendingLogins(d)

  async function up (req: LocalUpRequest): Promise<LocalStatus> {
    logins.cancel()
    const joined = await joinController(d, req)
    if (joined.login !== undefined) {
      // Until the user has logged in, the node keeps no session to the old login.
      stopSession()
      logins.wait(joined, joined.login, async (target, node) => { await ops.run(async () => { await connect(target, node) }) })
    } else {
      await connect(joined, joined.node)
    }
    return await localStatus(d)
  }

  /** connect saves the login `up` got and opens the map session. */
  async function connect (target: JoinTarget, node: Node): Promise<void> {
    const { controller, fingerprint, hostname, advertiseTags, routing, same } = target
    const saved = same ? await store.readMap().catch(() => undefined) : undefined
    if (!same) await store.clearMap()
    stopSession()
    if (!same) d.netmap = undefined
    d.login = { controller, ...(fingerprint !== undefined ? { fingerprint } : {}), hostname, advertiseTags, routing, node, wantRunning: true }
    await store.writeLogin(d.login)
    d.health.delete('login')
    updateHealthForSelf(d.health, node)
    d.authUrl = undefined
    d.state = node.status === 'pending' ? 'NeedsApproval' : 'Starting'
    connectMap(d, mapInit, d.login, saved)
    d.changes.notify('state')
  }

  async function down (): Promise<LocalStatus> {
    logins.cancel()
    stopSession()
    await applier.applying?.catch(() => {})
    await paths.stop()
    await dataPlane.down()
    nat.reset()
    if (d.login !== undefined) {
      d.login = { ...d.login, wantRunning: false }
      await store.writeLogin(d.login)
    }
    d.health.clear()
    metrics.controllerConnected.set(0)
    d.state = d.login !== undefined ? 'Stopped' : 'NeedsLogin'
    log.info('down: interface, routes, firewall table and resolver settings removed')
    d.changes.notify('state')
    return await localStatus(d)
  }

  async function logout (): Promise<void> {
    const s = d.session
    if (s !== undefined && d.netmap?.self.ephemeral === true && s.sendLogout()) {
      // The controller deletes the node and ends the session with node_deleted.
      const session = s
      await new Promise<void>(resolve => {
        const timer = setTimeout(done, 5000)
        function done (): void { clearTimeout(timer); session.off('server-error', done); resolve() }
        session.on('server-error', done)
      })
    }
    await down()
  }

  await resumeMap(d, mapInit)

  const daemonApi = {
    status: async () => await localStatus(d),
    peers: () => localPeers(d),
    up: async (r: LocalUpRequest) => await ops.run(async () => await up(r)),
    down: async () => await ops.run(down),
    ip: (peer?: string, family?: 4 | 6) => localIp(d, peer, family),
    ping: async (peer: string) => await localPing(d, peer),
    whois: (addr: string) => localWhois(d, addr),
    netcheck: async () => await nat.check(),
    changes: d.changes
  }
  let api: LocalApiServer
  try {
    api = await startLocalApi({ socketPath: init.socketPath, daemon: daemonApi, metrics, logger: log.child({ part: 'localapi' }) })
  } catch (e) {
    stopSession()
    await dataPlane.release()
    throw e
  }
  let metricsServer: http.Server | undefined
  let metricsUrl: string | undefined
  if (init.metricsListen !== undefined) {
    try {
      ({ server: metricsServer, url: metricsUrl } = await serveDaemonMetrics(init.metricsListen, metrics))
    } catch (e) {
      stopSession()
      await api.close()
      await dataPlane.release()
      throw e
    }
  }
  log.info({ socket: init.socketPath, state: d.state, interface: init.interfaceName, metrics: metricsUrl }, 'warrend started')

  return {
    socketPath: init.socketPath,
    metrics,
    ...(metricsUrl !== undefined ? { metricsUrl } : {}),
    ...daemonApi,
    logout: async () => { await ops.run(logout) },
    async close () {
      logins.cancel()
      nat.close()
      stopSession()
      await applier.applying?.catch(() => {})
      await api.close()
      await new Promise<void>(resolve => metricsServer === undefined ? resolve() : metricsServer.close(() => resolve()))
      await paths.stop()
      await dataPlane.release()
      log.info('warrend stopped; the mesh interface and firewall stay until \'warren down\'')
    }
  }
}

/** createDaemonLogger is the daemon's pino logger; anything that looks like a secret is redacted. */
export function createDaemonLogger (opts: { level?: string } = {}): Logger {
  return pino({
    name: 'warrend',
    level: opts.level ?? process.env.WARREN_LOG_LEVEL ?? 'info',
    redact: { paths: [...LOG_REDACT_PATHS], censor: '[redacted]' }
  })
}
