import os from 'node:os'
import http from 'node:http'
import { pino, type Logger } from 'pino'
import {
  WarrenError, isWarrenError, PROTOCOL_VERSION, createSerialQueue, parseHostPort, parseIpAddress, LOG_REDACT_PATHS, parseCredential, normalizeFingerprint, isTag,
  type Netmap, type Node, type Peer, type BackendState, type LocalStatus, type LocalUpRequest, type LocalIpResponse,
  type LocalPingResponse, type LocalWhoisResponse, type LocalPeerStatus
} from '@warren/protocol'
import { createControllerTransport, normalizeControllerUrl, type ControllerTransport, type ControllerTransportInit } from '@warren/sdk/transport'
import { createCommandRunner, type CommandRunner } from '../runner/index.js'
import type { WireGuardMode } from '../wireguard/types.js'
import { registerNode, type Registration } from '../control/register.js'
import { createMapSession, type MapSession, type NetmapUpdate } from '../control/map-session.js'
import { createBackoff, type BackoffInit } from '../control/backoff.js'
import { localEndpoints } from '../control/endpoints.js'
import { openStateStore, type SavedLogin, type SavedMap, type StateStore } from './state-store.js'
import { createDaemonMetrics, type DaemonMetrics } from './metrics.js'
import type { DataPlane, DataPlaneContext } from './data-plane.js'
import { createSystemDataPlane } from './system-data-plane.js'
import { startLocalApi, type LocalApiServer, type LocalBackend } from '../localapi/server.js'

/** DEFAULT_LISTEN_PORT is the WireGuard UDP port the daemon tries first. */
export const DEFAULT_LISTEN_PORT = 41641

export interface DaemonInit {
  stateDir: string
  socketPath: string
  interfaceName: string
  wireguardMode: WireGuardMode
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
   * close stops the daemon the way a dying process would: sockets close, but the
   * interface, routes and firewall table stay (fail-closed). Only `down` removes them.
   */
  close(): Promise<void>
}

/** Login-ending controller answers: the node must join again with an auth key. */
const GONE_CODES = new Set(['unknown_node', 'node_deleted', 'node_expired', 'not_found', 'node_not_found'])

/** startDaemon opens the state dir, restores the last map, serves the LocalAPI and reconnects if it was up. */
export async function startDaemon (init: DaemonInit): Promise<Daemon> {
  const log = init.logger ?? createDaemonLogger()
  const runner = init.runner ?? createCommandRunner()
  const metrics = createDaemonMetrics()
  const store: StateStore = await openStateStore(init.stateDir)
  const keys = await store.keys()
  const makeTransport = init.transport ?? createControllerTransport
  const dataPlane = await (init.dataPlane ?? createSystemDataPlane)({
    stateDir: init.stateDir,
    interfaceName: init.interfaceName,
    ...(init.resolvConfPath !== undefined ? { resolvConfPath: init.resolvConfPath } : {}),
    ...(init.magicDnsPort !== undefined ? { magicDnsPort: init.magicDnsPort } : {}),
    wireguardMode: init.wireguardMode,
    privateKey: keys.wireguard.privateKey,
    listenPort: init.listenPort ?? DEFAULT_LISTEN_PORT,
    runner,
    logger: log.child({ part: 'dataplane' })
  })
  const endpointsOf = init.endpoints ?? ((port: number) => localEndpoints({ meshInterface: init.interfaceName, listenPort: port }))

  let login: SavedLogin | undefined = await store.readLogin()
  let netmap: Netmap | undefined
  let state: BackendState = 'NeedsLogin'
  const health = new Map<string, string>()
  let session: MapSession | undefined
  let transport: Pick<ControllerTransport, 'request' | 'webSocket' | 'close'> | undefined
  /** generation changes on every up/down, so stale map updates from an old session are ignored */
  let generation = 0
  const ops = createSerialQueue()

  // ---------- applying maps, one at a time, newest wins ----------
  let pendingApply: { update: NetmapUpdate, gen: number } | undefined
  let applying: Promise<void> | undefined
  let retryTimer: NodeJS.Timeout | undefined

  function stateFor (self: Node): BackendState {
    if (self.status === 'pending') return 'NeedsApproval'
    if (self.status === 'expired') return 'NeedsLogin'
    return 'Running'
  }

  function updateHealthForSelf (self: Node): void {
    if (self.status === 'pending') health.set('approval', `node '${self.name}' is waiting for an admin to approve it: on the controller run 'warren admin nodes approve ${self.name}'`)
    else health.delete('approval')
  }

  function queueApply (u: NetmapUpdate, gen: number): void {
    if (gen !== generation) return
    netmap = u.netmap
    metrics.peers.set(u.netmap.peers.length)
    pendingApply = { update: u, gen }
    applying ??= drain().finally(() => { applying = undefined })
  }

  async function drain (): Promise<void> {
    while (pendingApply !== undefined) {
      const { update: u, gen } = pendingApply
      pendingApply = undefined
      // A map from before the last up/down is stale: down() has removed, or up() replaced, it.
      if (gen !== generation) continue
      const end = metrics.applyDuration.startTimer()
      try {
        await dataPlane.apply(u.netmap)
        end({ result: 'ok' })
        health.delete('apply')
        if (gen !== generation) continue
        state = stateFor(u.netmap.self)
        updateHealthForSelf(u.netmap.self)
        await store.writeMap({ session: u.session, seq: u.seq, netmap: u.netmap })
        log.info({ peers: u.netmap.peers.length, seq: u.seq, full: u.full }, 'network map applied')
      } catch (e) {
        end({ result: 'error' })
        metrics.errors.labels('apply').inc()
        health.set('apply', `could not apply the network map: ${(e as Error).message}`)
        log.error({ err: (e as Error).message }, 'applying the network map failed; retrying')
        clearTimeout(retryTimer)
        retryTimer = setTimeout(() => { if (pendingApply === undefined) queueApply(u, gen) }, 5000)
        retryTimer.unref()
      }
    }
  }

  // ---------- the map session ----------
  function connect (l: SavedLogin, resumeFrom: SavedMap | undefined): void {
    const gen = generation
    transport = makeTransport({ url: l.controller, ...(l.fingerprint !== undefined ? { fingerprint: l.fingerprint } : {}) })
    const t = transport
    const s = createMapSession({
      // Relative on purpose: it resolves under the controller URL whether or not its path ends in '/'.
      openSocket: () => t.webSocket('v1/machine/map'),
      machineKey: keys.machine,
      endpoints: () => endpointsOf(dataPlane.listenPort()),
      ...(resumeFrom !== undefined ? { resumeFrom } : {}),
      backoff: createBackoff(init.backoff),
      ...(init.keepaliveMs !== undefined ? { keepaliveMs: init.keepaliveMs } : {}),
      logger: log.child({ part: 'map' })
    })
    session = s
    s.on('netmap', (u: NetmapUpdate) => queueApply(u, gen))
    s.on('message', (type: string) => metrics.mapMessages.labels(type).inc())
    let lastSocketError = ''
    s.on('socket-error', (e: Error) => { lastSocketError = e.message })
    s.on('state', (st: string) => {
      if (gen !== generation) return
      metrics.controllerConnected.set(st === 'connected' ? 1 : 0)
      if (st === 'connected') {
        health.delete('controller')
        lastSocketError = ''
      } else if (st === 'disconnected') {
        const why = lastSocketError === '' ? '' : ` (${lastSocketError})`
        health.set('controller', `not connected to the controller at ${l.controller}${why}; ${netmap !== undefined ? 'the mesh keeps working with the last network map' : 'retrying'}`)
      }
    })
    s.on('server-error', (e: WarrenError) => {
      if (gen !== generation) return
      metrics.errors.labels('controller').inc()
      if (GONE_CODES.has(e.code)) {
        // The controller no longer knows this node: stop retrying, keep the data plane (fail-closed).
        health.set('login', `${e.message} (run 'warren up --auth-key KEY')`)
        state = 'NeedsLogin'
        s.close()
        if (session === s) session = undefined
      } else {
        health.set('controller', e.message)
      }
    })
  }

  function stopSession (): void {
    generation++
    session?.close()
    session = undefined
    transport?.close()
    transport = undefined
    pendingApply = undefined
    clearTimeout(retryTimer)
  }

  // ---------- LocalAPI operations ----------
  async function status (): Promise<LocalStatus> {
    const stats = state === 'Stopped' || state === 'NeedsLogin' && netmap === undefined ? [] : await dataPlane.peerStats().catch(() => [])
    const byKey = new Map(stats.map(s => [s.publicKey, s]))
    const peers: LocalPeerStatus[] = (netmap?.peers ?? []).map(p => {
      const st = byKey.get(p.wgKey)
      return {
        id: p.id, name: p.name, fqdn: p.fqdn, ...(p.user !== undefined ? { user: p.user } : {}), tags: p.tags,
        ipv4: p.ipv4, ipv6: p.ipv6, wgKey: p.wgKey, online: p.online,
        ...(st?.endpoint !== undefined ? { endpoint: st.endpoint } : {}),
        ...(st?.latestHandshake !== undefined ? { lastHandshake: st.latestHandshake.toISOString() } : {}),
        rxBytes: st?.rxBytes ?? 0,
        txBytes: st?.txBytes ?? 0
      }
    }).sort((a, b) => a.name.localeCompare(b.name))
    const self = netmap?.self ?? login?.node
    return {
      version: PROTOCOL_VERSION,
      backendState: state,
      health: [...health.values()],
      ...(login !== undefined ? { controller: { url: login.controller, connected: session?.state === 'connected' } } : {}),
      interfaceName: init.interfaceName,
      ...(self !== undefined ? { self } : {}),
      peers
    }
  }

  async function up (req: LocalUpRequest): Promise<LocalStatus> {
    for (const tag of req.advertiseTags ?? []) {
      if (!isTag(tag)) throw new WarrenError('bad_tag', `'${tag}' is not a tag: tags look like tag:name`, { field: 'advertiseTags' })
    }
    const url = normalizeControllerUrl(req.controller)
    const controller = url.origin + url.pathname.replace(/\/+$/, '')
    let fingerprint = req.fingerprint !== undefined ? normalizeFingerprint(req.fingerprint) : undefined
    if (req.authKey !== undefined) {
      const pin = parseCredential(req.authKey, 'auth').fingerprint
      if (fingerprint !== undefined && pin !== undefined && pin !== fingerprint) {
        throw new WarrenError('fingerprint_conflict', 'the auth key pins a different controller certificate than --fingerprint; use the key printed by this controller, or drop --fingerprint', { field: 'fingerprint' })
      }
      fingerprint ??= pin
    }
    const same = login !== undefined && login.controller === controller
    if (same) fingerprint ??= login!.fingerprint
    const hostname = req.hostname ?? (same ? login!.hostname : os.hostname())
    const advertiseTags = req.advertiseTags ?? (same ? login!.advertiseTags : [])

    const t = makeTransport({ url: controller, ...(fingerprint !== undefined ? { fingerprint } : {}) })
    const base = { machineKey: keys.machine, wireguardPrivateKey: keys.wireguard.privateKey, hostname, requestTags: advertiseTags }
    let reg: Registration
    try {
      if (same) {
        try {
          reg = await registerNode(t, base)
        } catch (e) {
          if (req.authKey === undefined || !isWarrenError(e) || e.status < 400 || e.status >= 500) throw e
          log.info({ code: e.code }, 'log-in with the machine key was refused; joining with the auth key')
          reg = await registerNode(t, { ...base, authKey: req.authKey })
        }
      } else {
        if (req.authKey === undefined) {
          throw new WarrenError('needs_auth_key', `this node has not joined the controller at ${controller} yet: pass --auth-key KEY (from 'warren admin keys create' on the controller)`, { status: 400, field: 'authKey' })
        }
        reg = await registerNode(t, { ...base, authKey: req.authKey })
      }
    } catch (e) {
      metrics.errors.labels('register').inc()
      log.warn({ code: (e as WarrenError).code, err: (e as Error).message }, 'joining the controller failed')
      throw e
    } finally { t.close() }

    log.info({ node: reg.node.name, id: reg.node.id, status: reg.node.status, controller }, 'registered with the controller')
    const saved = same ? await store.readMap().catch(() => undefined) : undefined
    if (!same) await store.clearMap()
    stopSession()
    if (!same) netmap = undefined
    login = { controller, ...(fingerprint !== undefined ? { fingerprint } : {}), hostname, advertiseTags, node: reg.node, wantRunning: true }
    await store.writeLogin(login)
    health.delete('login')
    updateHealthForSelf(reg.node)
    state = reg.node.status === 'pending' ? 'NeedsApproval' : 'Starting'
    connect(login, saved)
    return await status()
  }

  async function down (): Promise<LocalStatus> {
    stopSession()
    await applying?.catch(() => {})
    await dataPlane.down()
    if (login !== undefined) {
      login = { ...login, wantRunning: false }
      await store.writeLogin(login)
    }
    health.clear()
    metrics.controllerConnected.set(0)
    state = login !== undefined ? 'Stopped' : 'NeedsLogin'
    log.info('down: interface, routes, firewall table and resolver settings removed')
    return await status()
  }

  function allNodes (): Array<{ node: Peer | Node, self: boolean }> {
    if (netmap === undefined) return login !== undefined ? [{ node: login.node, self: true }] : []
    return [{ node: netmap.self, self: true }, ...netmap.peers.map(p => ({ node: p, self: false }))]
  }

  function findNode (q: string): { node: Peer | Node, self: boolean } {
    const want = q.trim().toLowerCase().replace(/\.$/, '')
    const addr = parseIpAddress(want)
    const isAddr = (text: string): boolean => { const a = parseIpAddress(text); return a !== undefined && a.family === addr!.family && a.network === addr!.network }
    const hit = allNodes().find(({ node }) => addr !== undefined
      ? isAddr(node.ipv4) || isAddr(node.ipv6)
      : node.name === want || node.fqdn.replace(/\.$/, '') === want)
    if (hit === undefined) {
      throw new WarrenError('unknown_peer', `'${q}' is not a peer of this node (by name, full name or mesh address); 'warren status' lists the peers`, { status: 404, field: 'peer' })
    }
    return hit
  }

  function requireMap (): void {
    if (allNodes().length === 0) throw new WarrenError('not_running', 'this node has not joined a mesh yet: run \'warren up --controller URL --auth-key KEY\'', { status: 409 })
  }

  function ip (peer?: string, family?: 4 | 6): LocalIpResponse {
    requireMap()
    const { node } = peer === undefined || peer === '' ? allNodes()[0]! : findNode(peer)
    const addresses = family === 4 ? [node.ipv4] : family === 6 ? [node.ipv6] : [node.ipv4, node.ipv6]
    return { name: node.name, addresses }
  }

  async function ping (peer: string): Promise<LocalPingResponse> {
    requireMap()
    if (state === 'Stopped') throw new WarrenError('not_running', 'the mesh is down: run \'warren up\' first', { status: 409 })
    const { node } = findNode(peer)
    let addr = node.ipv4
    if (parseIpAddress(peer.trim())?.family === 6) addr = node.ipv6
    let latencyMs: number
    try { latencyMs = await dataPlane.ping(addr) } catch (e) {
      metrics.errors.labels('ping').inc()
      throw new WarrenError('ping_failed', `no reply from ${node.name} (${addr}) over the mesh: ${(e as Error).message}`, { status: 504 })
    }
    const st = (await dataPlane.peerStats().catch(() => [])).find(s => s.publicKey === node.wgKey)
    return {
      peer: node.name, address: addr, latencyMs,
      direct: st?.endpoint !== undefined || node.wgKey === netmap?.self.wgKey,
      ...(st?.endpoint !== undefined ? { endpoint: st.endpoint } : {})
    }
  }

  function whois (addr: string): LocalWhoisResponse {
    if (parseIpAddress(addr.trim()) === undefined) throw new WarrenError('bad_ip', `'${addr}' is not an IP address: pass a mesh address such as 100.64.0.2`, { field: 'ip' })
    requireMap()
    const { node, self } = findNode(addr)
    return {
      node: { id: node.id, name: node.name, fqdn: node.fqdn, ipv4: node.ipv4, ipv6: node.ipv6, tags: node.tags },
      ...(node.user !== undefined ? { user: node.user } : {}),
      tags: node.tags,
      self
    }
  }

  // ---------- start: restore, serve, reconnect ----------
  if (login !== undefined && login.wantRunning) {
    state = 'Starting'
    const saved = await store.readMap().catch((e: Error) => { log.warn({ err: e.message }, 'saved network map unreadable; waiting for the controller'); return undefined })
    if (saved !== undefined) {
      log.info({ peers: saved.netmap.peers.length, seq: saved.seq }, 'restoring the last network map before the controller answers')
      queueApply({ netmap: saved.netmap, full: true, session: saved.session, seq: saved.seq }, generation)
      await applying
    }
    connect(login, saved)
  } else if (login !== undefined) {
    state = 'Stopped'
  }

  const daemonApi = { status, up: async (r: LocalUpRequest) => await ops.run(async () => await up(r)), down: async () => await ops.run(down), ip, ping, whois }
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
      ({ server: metricsServer, url: metricsUrl } = await serveMetrics(init.metricsListen, metrics))
    } catch (e) {
      stopSession()
      await api.close()
      await dataPlane.release()
      throw e
    }
  }
  log.info({ socket: init.socketPath, state, interface: init.interfaceName, metrics: metricsUrl }, 'warrend started')

  return {
    socketPath: init.socketPath,
    metrics,
    ...(metricsUrl !== undefined ? { metricsUrl } : {}),
    ...daemonApi,
    async close () {
      stopSession()
      await applying?.catch(() => {})
      await api.close()
      await new Promise<void>(resolve => metricsServer === undefined ? resolve() : metricsServer.close(() => resolve()))
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

async function serveMetrics (listen: string, metrics: DaemonMetrics): Promise<{ server: http.Server, url: string }> {
  const parsed = parseHostPort(listen, '--metrics-listen')
  const host = parsed.host === '' ? '0.0.0.0' : parsed.host
  const port = parsed.port
  const server = http.createServer((req, res) => {
    if (req.method !== 'GET' || req.url?.split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('only GET /metrics is served here\n')
      return
    }
    metrics.render().then(text => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
      (e: Error) => res.writeHead(500).end(e.message))
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', e => reject(new WarrenError('listen_failed', `cannot serve metrics on ${listen}: ${e.message}`, { status: 500 })))
    server.listen(port, host, resolve)
  })
  const a = server.address() as { address: string, port: number }
  return { server, url: `http://${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}/metrics` }
}
