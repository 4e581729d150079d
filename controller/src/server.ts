import type { Server as HttpsServer } from 'node:https'
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { chmod, mkdir, rm, rename } from 'node:fs/promises'
import { join } from 'node:path'
import { hostname } from 'node:os'
import { isIP } from 'node:net'
import type { FastifyInstance } from 'fastify'
import { pino, type Logger } from 'pino'
import { WarrenError, parseDuration, isDomain, DEFAULT_DOMAIN, parseHostPort, formatHostPort, LOG_REDACT_PATHS, TLS_RELAY_PATH, type NatConfig, type RelayInfo, type Node } from '@warren/protocol'
import { openStore } from './store.js'
import { loadOrCreateTls } from './tls.js'
import { createControllerState, type ControllerState } from './state.js'
import { createControllerMetrics, type ControllerMetrics } from './metrics.js'
import { buildApp, buildMetricsApp, type ControllerPlugin, type RateLimitOptions } from './app.js'
import { mapServerHook, MAP_PATH, type MapServerHookOptions, type MapService } from './map/index.js'
import { writeRawError } from './raw-http.js'
import { createPolicyEngine, emailResolution, type Policy, type PolicyUser } from './policy/index.js'
import { createPolicyService, policyUsers, type PolicyService } from './policy-service.js'
import { policyRoutes } from './routes/policy.js'
import type { ServerHook, Closable } from './server-hooks.js'
import { startStunServer, type StunServer } from './stun-server.js'
import { startEmbeddedRelay, embeddedRelayBackend, createRelayLinkServer, createRelayMembersFeed, type EmbeddedRelayOptions, type RelayMembersFeed } from './relay/index.js'
import { createTlsRelay, controllerMembers, type TlsRelay, type TlsRelayOptions } from './tls-relay/index.js'
import type { UdpRelay } from '@warren/relay'
import { checkOidcOptions, createOidcClient, openTokenVault, createLoginService, loginRoutes, createIdpRecheck, recheckRoutes, type IdpRecheck, type OidcOptions } from './oidc/index.js'

export type { ServerHook, ServerHookContext, Closable } from './server-hooks.js'

export interface StartControllerOptions {
  stateDir: string
  /** `host:port`, `[v6]:port` or `:port`; port 0 picks a free port */
  listen: string
  domain?: string
  tlsCert?: string
  tlsKey?: string
  /** a pino logger; default: info level to stderr; false: silent */
  logger?: Logger | false
  rateLimit?: RateLimitOptions | false
  /** node key lifetime: a duration (`180d`) or ms; 0 = keys never expire */
  nodeKeyExpiry?: string | number
  /** admin route plugins (the policy routes), mounted on both the TLS and the socket server */
  plugins?: ControllerPlugin[]
  onServer?: ServerHook | ServerHook[]
  /**
   * map tunes the live network map service mounted at /v1/machine/map (coalescing,
   * timeouts; `policy` replaces the controller's policy engine, for tests and benchmarks).
   * false leaves it out, for tests that mount their own.
   */
  map?: MapServerHookOptions | false
  /**
   * tlsRelay tunes the embedded TLS relay at /v1/relay (on the same HTTPS port), which
   * carries WireGuard packets for nodes that cannot send UDP. It needs the map service;
   * false leaves it out.
   */
  tlsRelay?: TlsRelayOptions | false
  /**
   * `host:port` for a plain-HTTP listener that serves Prometheus metrics at GET /metrics
   * (`:port` is loopback). Off by default; the public server never serves metrics. Bind
   * it to loopback or a private address: it has no authentication.
   */
  metricsListen?: string
  /**
   * stunPort turns on the STUN server on the listen address: UDP `stunPort` and
   * `stunPort + 1` (0 picks two free ports, for tests). Off when absent; the CLI's
   * `--stun-port` defaults to 3478. The map then lists both as `:PORT` entries in
   * `nat.stun`: host-less, meaning the host of the controller URL the node joined with.
   */
  stunPort?: number
  /**
   * relay runs the kernel UDP relay in this process (needs root and nft): nodes that find
   * no direct path to a peer get an allocation on it. Off when absent; `warren controller
   * serve` turns it on when it can.
   */
  relay?: EmbeddedRelayOptions
  /**
   * oidc turns on login at an OpenID Connect identity provider for nodes that join
   * without an auth key (`warren up --controller URL`); see controller/src/oidc/.
   */
  oidc?: OidcOptions
}

export interface RunningController {
  /** https://host:port that clients use */
  url: string
  /** SHA-256 of the certificate, 64 lowercase hex digits */
  fingerprint: string
  /** the same, as colon-separated uppercase pairs */
  displayFingerprint: string
  /** path of the local admin Unix socket */
  adminSocket: string
  state: ControllerState
  app: FastifyInstance
  adminApp: FastifyInstance
  metrics: ControllerMetrics
  /** the access policy with its history (what /v1/policy serves) */
  policy: PolicyService
  /** the live map service, unless started with `map: false` */
  map?: MapService
  /** the embedded TLS relay, unless started with `tlsRelay: false` or `map: false` */
  tlsRelay?: TlsRelay
  /** http://host:port/metrics, when started with `metricsListen` */
  metricsUrl?: string
  /** the STUN server, when started with `stunPort` */
  stun?: StunServer
  /** the embedded kernel relay, when started with `relay` */
  relay?: UdpRelay
  close: () => Promise<void>
}

export const ADMIN_SOCKET_FILE = 'admin.sock'
const SWEEP_MS = 10_000

/** startController opens the state dir and serves the API on TLS and on the admin socket. */
export async function startController (opts: StartControllerOptions): Promise<RunningController> {
  const { host, port } = parseListen(opts.listen)
  const metricsAddress = opts.metricsListen === undefined ? undefined : parseHostPort(opts.metricsListen, '--metrics-listen')
  const domain = opts.domain ?? DEFAULT_DOMAIN
  if (!isDomain(domain)) {
    throw new WarrenError('bad_domain', `--domain '${domain}' is not a DNS domain such as warren.internal`, { field: 'domain' })
  }
  const nodeKeyExpiryMs = typeof opts.nodeKeyExpiry === 'string' ? parseDuration(opts.nodeKeyExpiry, 'node key expiry') : opts.nodeKeyExpiry
  const log = opts.logger === false ? pino({ level: 'silent' }) : opts.logger ?? createLogger()
  const oidc = opts.oidc === undefined ? undefined : checkOidcOptions(opts.oidc)

  // The state dir holds private keys and the admin socket: only root may enter it.
  await mkdir(opts.stateDir, { recursive: true, mode: 0o700 })
  await chmod(opts.stateDir, 0o700)
  const tls = await loadOrCreateTls({
    stateDir: opts.stateDir,
    host: host === '0.0.0.0' || host === '::' ? hostname() : host,
    ...(opts.tlsCert !== undefined ? { certFile: opts.tlsCert } : {}),
    ...(opts.tlsKey !== undefined ? { keyFile: opts.tlsKey } : {})
  })
  const store = await openStore(opts.stateDir)
  const closables: Closable[] = []
  let state: ControllerState | undefined
  // Registration asks the policy's tagOwners, and the policy service needs the state first.
  let policyInForce: PolicyService | undefined
  try {
    state = createControllerState({
      store,
      domain,
      tagOwnersAllow: (user, tag) => policyInForce?.tagOwnersAllow(user, tag) ?? false,
      autoApproveRoutes: node => policyInForce?.autoApprovedRoutes(node) ?? [],
      fingerprint: tls.fingerprint,
      ...(nodeKeyExpiryMs !== undefined ? { nodeKeyExpiryMs } : {}),
      onListenerError: (err, event) => { log.error({ err, event }, 'state event listener failed') }
    })
    const metrics = createControllerMetrics(state)
    // The policy decides what the map service sends; a policy change reaches exactly the
    // sessions whose peers or filters it changed.
    const policy = await createPolicyService(state)
    policyInForce = policy
    const approving = state
    const stopApproving = policy.onPolicyChange(() => {
      approving.applyAutoApprovers().catch((err: unknown) => { log.error({ err }, 'could not apply the policy\'s autoApprovers') })
    })
    closables.push({ close: async () => { stopApproving() } })
    closables.push({ close: async () => { await policy.close() } })
    let map: MapService | undefined
    let stun: StunServer | undefined
    if (opts.stunPort !== undefined) {
      stun = await startStunServer({ host, port: opts.stunPort })
      const s = stun
      closables.push({ close: async () => { await s.close() } })
    }
    // The map service starts later; until then no router is primary.
    const primaryRoutes = (nodeId: string): string[] => map?.primaryRoutes(nodeId) ?? []
    const common = { state, metrics, primaryRoutes, plugins: [policyRoutes(policy), ...(opts.plugins ?? [])], ...(opts.rateLimit !== undefined ? { rateLimit: opts.rateLimit } : {}) }
    let publicUrl = ''
    const machinePlugins = []
    let recheck: IdpRecheck | undefined
    if (oidc !== undefined) {
      const client = createOidcClient(oidc)
      const vault = await openTokenVault(opts.stateDir)
      const logins = createLoginService({ state, client, settings: oidc, vault, publicUrl: () => publicUrl })
      const r = recheck = createIdpRecheck({ state, client, settings: oidc, vault, onTrouble: (err, user) => { log.warn({ err, user }, 'the identity provider check could not run; access stays as it was') } })
      closables.push({ close: async () => { logins.close(); r.close() } })
      machinePlugins.push(loginRoutes(logins))
      // Discovery is tried now so a wrong issuer shows in the log at once; logins retry it.
      client.ready().then(() => { log.info({ issuer: oidc.issuer }, 'identity provider discovered; nodes may join by logging in') },
        (err: unknown) => { log.warn({ err: (err as Error).message }, 'identity provider not usable yet; logins will retry') })
    }
    common.plugins.push(recheckRoutes(recheck))
    const app = await buildApp({ ...common, mode: 'public', https: { key: tls.key, cert: tls.cert }, logger: log, machinePlugins })
    const adminApp = await buildApp({ ...common, mode: 'local', logger: log.child({ server: 'admin-socket' }) })
    closables.push({ close: async () => { await app.close() } }, { close: async () => { await adminApp.close() } })

    const hooks = opts.onServer === undefined ? [] : Array.isArray(opts.onServer) ? [...opts.onServer] : [opts.onServer]
    let relay: UdpRelay | undefined
    if (opts.relay !== undefined) {
      try {
        const r = relay = await startEmbeddedRelay(opts.stateDir, opts.relay, log.child({ module: 'relay' }))
        // Closed last: the map service releases its allocations through it first.
        closables.push({ close: async () => { await r.close() } })
        log.info({ udp: r.endpoint }, 'embedded kernel relay running')
      } catch (e) {
        if (opts.relay.optional !== true) throw e
        log.warn({ err: (e as Error).message }, 'embedded kernel relay not started; nodes get no UDP relay from this controller')
      }
    }
    // The embedded relays are one entry of the maps' relay list: the kernel relay's port and
    // key, and (once the URL is known) this server's TLS relay.
    let embeddedRelayInfo: RelayInfo | undefined
    let natGiven: NatConfig | undefined
    if (opts.map !== false) {
      const mapOpts = { ...opts.map }
      // STUN answers on the controller's ports (host-less: the host nodes joined with) and
      // on the embedded relay's control port, so nodes have two or more servers to compare.
      const backend = relay === undefined ? undefined : embeddedRelayBackend(relay)
      if (relay !== undefined && backend !== undefined) {
        mapOpts.relay ??= { backends: [backend], ...(opts.relay?.grantTtlMs !== undefined ? { grantTtlMs: opts.relay.grantTtlMs } : {}) }
      }
      const stunList = [...(stun?.ports.map(p => `:${p}`) ?? []), ...(relay !== undefined ? [relay.endpoint] : [])]
      if (stunList.length > 0) mapOpts.nat ??= { stun: stunList, relays: backend !== undefined ? [backend.info] : [] }
      embeddedRelayInfo = backend?.info
      natGiven = mapOpts.nat
      // The map's MeshPolicy is the one writer of its engine; policy and user changes go to it.
      hooks.unshift(mapServerHook({
        ...mapOpts,
        policy: mapOpts.policy ?? createPolicyEngine(policy.current(), policyUsers(state), { meshIpv6: state.ulaPrefix }),
        onStart: s => {
          map = s
          if (mapOpts.policy === undefined) closables.push(followPolicy(state!, policy, (p, users) => { s.mesh.setPolicy(p, users) }))
          mapOpts.onStart?.(s)
        }
      }))
    }
    if (opts.map !== false) {
      // Standalone relays connect here (with a relay-scoped API key) and join the map's broker;
      // those that run a TLS relay are told its members.
      let members: RelayMembersFeed | undefined
      hooks.push(server => {
        const linkLog = log.child({ module: 'relay-link' })
        const link = createRelayLinkServer({
          authenticate: key => `apikey:${state!.authenticateApiKey(key, 'relay').id}`,
          onLinked: (actor, hello) => {
            state!.commit([], actor, 'relay.link', hello.id, { udp: hello.udp, ...(hello.tls !== undefined ? { tls: hello.tls.url } : {}) }).catch((err: unknown) => { linkLog.warn({ err, relay: hello.id }, 'could not write the relay link to the audit log') })
          },
          broker: () => map?.relays,
          members: () => {
            if (map !== undefined) members ??= followedMembers(state!, map)
            return members
          },
          log: linkLog
        })
        const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
          if (link.handleUpgrade(req, socket, head)) return
          // As the map service does when alone: the last listener answers paths nobody serves.
          const path = (req.url ?? '').split('?')[0] ?? ''
          if (path !== MAP_PATH && path !== TLS_RELAY_PATH && server.listeners('upgrade').at(-1) === onUpgrade) {
            writeRawError(socket, 404, 'not_found', `no WebSocket endpoint at ${path}; the map session is at ${MAP_PATH}`)
          }
        }
        server.on('upgrade', onUpgrade)
        return { close: async () => { server.off('upgrade', onUpgrade); await link.close(); members?.close() } }
      })
    }
    await app.ready()
    for (const hook of hooks) {
      const c = await hook(app.server as unknown as HttpsServer, { state, metrics, log, app })
      if (c !== undefined) closables.unshift(c)
    }
    let tlsRelay: TlsRelay | undefined
    if (map !== undefined && opts.tlsRelay !== false) tlsRelay = mountTlsRelay(app.server as unknown as HttpsServer, map, state, { metrics, log, closables }, opts.tlsRelay)
    let metricsUrl: string | undefined
    if (metricsAddress !== undefined) {
      const metricsApp = buildMetricsApp({ metrics, logger: log.child({ server: 'metrics' }) })
      closables.push({ close: async () => { await metricsApp.close() } })
      metricsUrl = await listenMetrics(metricsApp, metricsAddress.host === '' ? '127.0.0.1' : metricsAddress.host, metricsAddress.port)
    }

    await app.listen({ host, port })
    const address = app.server.address()
    const boundPort = typeof address === 'object' && address !== null ? address.port : port

    const adminSocket = join(opts.stateDir, ADMIN_SOCKET_FILE)
    // Bind under a temporary name and rename once it is 0600, so the socket is never
    // reachable with looser permissions. The store's lock keeps a second controller out,
    // so an existing socket file is stale.
    const bindPath = `${adminSocket}.${process.pid}.tmp`
    await rm(bindPath, { force: true })
    await adminApp.listen({ path: bindPath })
    await chmod(bindPath, 0o600)
    await rename(bindPath, adminSocket)

    const sweep = setInterval(() => { state!.sweepExpired() }, SWEEP_MS)
    sweep.unref()
    const url = `https://${urlHost(host)}:${boundPort}`
    publicUrl = url
    if (tlsRelay !== undefined && map !== undefined && embeddedRelayInfo !== undefined && natGiven?.relays.includes(embeddedRelayInfo) === true) {
      // Before any node connects, so every map has it.
      embeddedRelayInfo.tls = url
      map.setNat(natGiven)
    }
    log.info({ url, fingerprint: tls.displayFingerprint, stateDir: opts.stateDir, domain, ...(metricsUrl !== undefined ? { metricsUrl } : {}), ...(stun !== undefined ? { stunPorts: stun.ports } : {}) }, 'controller listening')

    let closing: Promise<void> | undefined
    const running: RunningController = {
      url,
      fingerprint: tls.fingerprint,
      displayFingerprint: tls.displayFingerprint,
      adminSocket,
      state,
      app,
      adminApp,
      metrics,
      policy,
      ...(map !== undefined ? { map } : {}),
      ...(tlsRelay !== undefined ? { tlsRelay } : {}),
      ...(metricsUrl !== undefined ? { metricsUrl } : {}),
      ...(stun !== undefined ? { stun } : {}),
      ...(relay !== undefined ? { relay } : {}),
      close: async () => {
        closing ??= (async () => {
          clearInterval(sweep)
          await closeAll(closables)
          await state!.close()
          await store.close()
          await rm(adminSocket, { force: true })
        })()
        await closing
      }
    }
    return running
  } catch (e) {
    await closeAll(closables)
    await state?.close()
    await store.close()
    throw e
  }
}

/**
 * mountTlsRelay serves the TLS relay on the API server, judging pairs with the map's
 * mesh (the peers each node's map shows) and hearing every mesh change from it.
 */
function mountTlsRelay (server: HttpsServer, map: MapService, state: ControllerState, ctx: { metrics: ControllerMetrics, log: Logger, closables: Closable[] }, opts?: TlsRelayOptions): TlsRelay {
  const relay = createTlsRelay({
    nodeByMachineKey: key => state.nodeByMachineKey(key),
    getNode: id => state.getNode(id),
    peers: map.mesh,
    events: state.events,
    registry: ctx.metrics.registry,
    log: ctx.log.child({ module: 'tls-relay' })
  }, opts)
  const detach = relay.attach(server)
  const stop = map.onMeshChange(ids => relay.meshChanged(ids))
  // Closed before the map service (closables close in order, hooks first).
  ctx.closables.unshift({ close: async () => { stop(); detach(); await relay.close() } })
  return relay
}

/**
 * followedMembers feeds standalone TLS relays the members the embedded relay would judge
 * by (the node registry and the map's mesh), hearing each change of either.
 */
function followedMembers (state: ControllerState, map: MapService): RelayMembersFeed {
  const members = controllerMembers({ nodeByMachineKey: k => state.nodeByMachineKey(k), getNode: id => state.getNode(id), peers: map.mesh })
  return createRelayMembersFeed({
    node: id => state.getNode(id),
    nodes: () => state.listNodes(),
    isMember: id => members.isMember(id),
    peersOf: id => members.peersOf(id),
    onChange (listener) {
      const stopMesh = map.onMeshChange(listener)
      const onNode = (n: Node): void => { listener([n.id]) }
      // Online, endpoint and last-seen updates come with every session and heartbeat; no member entry holds them.
      const onUpsert = (n: Node, previous: Node | undefined): void => { if (previous === undefined || !presenceOnly(n, previous)) onNode(n) }
      state.events.on('node-upserted', onUpsert)
      state.events.on('node-removed', onNode)
      return () => {
        stopMesh()
        state.events.off('node-upserted', onUpsert)
        state.events.off('node-removed', onNode)
      }
    }
  })
}

/** presenceOnly says two records of a node differ at most in presence: online, endpoints, lastSeen. */
function presenceOnly (n: Node, previous: Node): boolean {
  const rest = ({ online: _online, endpoints: _endpoints, lastSeen: _lastSeen, ...other }: Node): object => other
  return JSON.stringify(rest(n)) === JSON.stringify(rest(previous))
}

/** listenMetrics starts the metrics listener and returns its /metrics URL. */
async function listenMetrics (app: FastifyInstance, host: string, port: number): Promise<string> {
  try {
    await app.listen({ host, port })
  } catch (e) {
    throw new WarrenError('listen_failed', `cannot serve metrics on --metrics-listen ${formatHostPort(host, port)}: ${(e as Error).message}`, { status: 500, field: 'metrics-listen' })
  }
  const address = app.server.address()
  const boundPort = typeof address === 'object' && address !== null ? address.port : port
  return `http://${formatHostPort(host, boundPort)}/metrics`
}

/**
 * followPolicy hands the policy in force to `apply` (the map's MeshPolicy, the one writer
 * of the engine) after each policy change, and again when a user change changes whom an
 * email or an `idp:` group in the policy names (a login or a check at the identity
 * provider with new groups); other user changes cost nothing.
 */
export function followPolicy (state: ControllerState, policy: PolicyService, apply: (policy: Policy, users: PolicyUser[]) => void): Closable {
  let resolved = emailResolution(policy.current(), policyUsers(state))
  const recompile = (): void => {
    const users = policyUsers(state)
    resolved = emailResolution(policy.current(), users)
    apply(policy.current(), users)
  }
  const onUsers = (): void => {
    if (emailResolution(policy.current(), policyUsers(state)) !== resolved) recompile()
  }
  const stop = policy.onPolicyChange(recompile)
  state.events.on('user-upserted', onUsers)
  state.events.on('user-removed', onUsers)
  return {
    close () {
      stop()
      state.events.off('user-upserted', onUsers)
      state.events.off('user-removed', onUsers)
    }
  }
}

async function closeAll (closables: Closable[]): Promise<void> {
  for (const c of closables) await c.close()
}

/** createLogger is the default controller log: JSON lines on stderr, credentials redacted. */
export function createLogger (level = 'info'): Logger {
  return pino({
    level,
    base: { service: 'warren-controller' },
    redact: { paths: [...LOG_REDACT_PATHS], censor: '[redacted]' }
  }, pino.destination(2))
}

/** parseListen reads `host:port`, `[v6]:port` or `:port`. */
export function parseListen (listen: string): { host: string, port: number } {
  const { host, port } = parseHostPort(listen, '--listen')
  return { host: host === '' ? '0.0.0.0' : host, port }
}

function urlHost (host: string): string {
  if (host === '0.0.0.0') return hostname()
  if (host === '::') return hostname()
  return isIP(host) === 6 ? `[${host}]` : host
}
