import type { Server as HttpsServer } from 'node:https'
import { chmod, mkdir, rm, rename } from 'node:fs/promises'
import { join } from 'node:path'
import { hostname } from 'node:os'
import { isIP } from 'node:net'
import type { FastifyInstance } from 'fastify'
import { pino, type Logger } from 'pino'
import { WarrenError, parseDuration, isDomain, DEFAULT_DOMAIN } from '@warren/protocol'
import { openStore } from './store.js'
import { loadOrCreateTls } from './tls.js'
import { createControllerState, type ControllerState } from './state.js'
import { createControllerMetrics, type ControllerMetrics } from './metrics.js'
import { buildApp, type ControllerPlugin, type RateLimitOptions } from './app.js'
import { mapServerHook, type MapServerHookOptions, type MapService } from './map/index.js'
import { policyRoutes, policyServiceFor, createPolicyEngine, type PolicyService } from './policy/index.js'
import type { ServerHook, Closable } from './server-hooks.js'

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
  close: () => Promise<void>
}

export const ADMIN_SOCKET_FILE = 'admin.sock'
const SWEEP_MS = 10_000

/** startController opens the state dir and serves the API on TLS and on the admin socket. */
export async function startController (opts: StartControllerOptions): Promise<RunningController> {
  const { host, port } = parseListen(opts.listen)
  const domain = opts.domain ?? DEFAULT_DOMAIN
  if (!isDomain(domain)) {
    throw new WarrenError('bad_domain', `--domain '${domain}' is not a DNS domain such as warren.internal`, { field: 'domain' })
  }
  const nodeKeyExpiryMs = typeof opts.nodeKeyExpiry === 'string' ? parseDuration(opts.nodeKeyExpiry, 'node key expiry') : opts.nodeKeyExpiry
  const log = opts.logger === false ? pino({ level: 'silent' }) : opts.logger ?? createLogger()

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
  try {
    state = createControllerState({
      store,
      domain,
      fingerprint: tls.fingerprint,
      ...(nodeKeyExpiryMs !== undefined ? { nodeKeyExpiryMs } : {}),
      onListenerError: (err, event) => { log.error({ err, event }, 'state event listener failed') }
    })
    const metrics = createControllerMetrics(state)
    // The policy decides what the map service sends; a policy change reaches exactly the
    // sessions whose peers or filters it changed.
    const policy = await policyServiceFor(state)
    closables.push({ close: () => { policy.close() } })
    let map: MapService | undefined
    const common = { state, metrics, plugins: [policyRoutes(policy), ...(opts.plugins ?? [])], ...(opts.rateLimit !== undefined ? { rateLimit: opts.rateLimit } : {}) }
    const app = await buildApp({ ...common, mode: 'public', https: { key: tls.key, cert: tls.cert }, logger: log })
    const adminApp = await buildApp({ ...common, mode: 'local', logger: log.child({ server: 'admin-socket' }) })
    closables.push({ close: async () => { await app.close() } }, { close: async () => { await adminApp.close() } })

    const hooks = opts.onServer === undefined ? [] : Array.isArray(opts.onServer) ? [...opts.onServer] : [opts.onServer]
    if (opts.map !== false) {
      const mapOpts = opts.map ?? {}
      // The map's MeshPolicy is the one writer of its engine; policy and user changes go to it.
      const users = (): Array<{ name: string, email?: string }> => state!.listUsers().map(u => (u.email === undefined ? { name: u.name } : { name: u.name, email: u.email }))
      hooks.unshift(mapServerHook({
        ...mapOpts,
        policy: mapOpts.policy ?? createPolicyEngine(policy.current().policy, users()),
        onStart: s => {
          map = s
          if (mapOpts.policy === undefined) policy.onChange(() => { s.mesh.setPolicy(policy.current().policy, users()) })
          mapOpts.onStart?.(s)
        }
      }))
    }
    await app.ready()
    for (const hook of hooks) {
      const c = await hook(app.server as unknown as HttpsServer, { state, metrics, log, app })
      if (c !== undefined) closables.unshift(c)
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
    log.info({ url, fingerprint: tls.displayFingerprint, stateDir: opts.stateDir, domain }, 'controller listening')

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

async function closeAll (closables: Closable[]): Promise<void> {
  for (const c of closables) await c.close()
}

/** createLogger is the default controller log: JSON lines on stderr, credentials redacted. */
export function createLogger (level = 'info'): Logger {
  return pino({
    level,
    base: { service: 'warren-controller' },
    redact: { paths: ['req.headers.authorization', 'authKey', '*.authKey', 'key', '*.key', 'privateKey', '*.privateKey'], censor: '[redacted]' }
  }, pino.destination(2))
}

/** parseListen reads `host:port`, `[v6]:port` or `:port`. */
export function parseListen (listen: string): { host: string, port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(listen.trim())
  const port = m === null ? NaN : Number(m[3])
  if (m === null || port > 65535) {
    throw new WarrenError('bad_listen', `--listen '${listen}' must be HOST:PORT, [IPv6]:PORT or :PORT (for example 0.0.0.0:8443)`, { field: 'listen' })
  }
  const host = m[1] ?? (m[2] === '' ? '0.0.0.0' : m[2]!)
  return { host, port }
}

function urlHost (host: string): string {
  if (host === '0.0.0.0') return hostname()
  if (host === '::') return hostname()
  return isIP(host) === 6 ? `[${host}]` : host
}
