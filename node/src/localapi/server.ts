import http from 'node:http'
import net from 'node:net'
import { promises as fs } from 'node:fs'
import { dirname } from 'node:path'
import type { Logger } from 'pino'
import { diffStatus, type ChangeFeed } from './watch.js'
import {
  WarrenError, isWarrenError, validate, LocalStatus, LocalPeers, LocalUpRequest, LocalIpResponse, LocalPingRequest, LocalPingResponse,
  LocalWhoisResponse, LocalNetcheck, LocalWatchEvent, type TSchema, type ErrorBody
} from '@warren/protocol'

/** LocalBackend is what the LocalAPI serves: the daemon's operations. */
export interface LocalBackend {
  status(): Promise<LocalStatus>
  /** peers is this node and its peers from the map alone: cheap enough for every name lookup */
  peers(): LocalPeers
  up(req: LocalUpRequest): Promise<LocalStatus>
  down(): Promise<LocalStatus>
  ip(peer?: string, family?: 4 | 6): LocalIpResponse
  ping(peer: string): Promise<LocalPingResponse>
  whois(ip: string): LocalWhoisResponse
  /** netcheck asks the map's STUN servers, through the WireGuard port, how the node is seen */
  netcheck(): Promise<LocalNetcheck>
  /** changes announces that status may have changed (GET /v1/watch streams what did) */
  changes?: Pick<ChangeFeed, 'subscribe'>
}

/**
 * MetricsExposition is what GET /metrics serves: the owner's Prometheus registry, passed in
 * so that the LocalAPI knows nothing of which series exist (the daemon's metrics fit).
 */
export interface MetricsExposition {
  readonly registry: { readonly contentType: string }
  render(): Promise<string>
}

export interface LocalApiInit {
  socketPath: string
  daemon: LocalBackend
  metrics?: MetricsExposition
  logger?: Logger
}

export interface LocalApiServer {
  readonly socketPath: string
  close(): Promise<void>
}

const MAX_BODY = 64 * 1024

interface Route {
  method: 'GET' | 'POST'
  /** request schema for POST bodies */
  body?: TSchema
  /** response schema: every answer is checked before it leaves */
  reply: TSchema
  handle: (q: URLSearchParams, body: unknown) => Promise<unknown> | unknown
}

/**
 * startLocalApi serves the daemon's JSON API over HTTP on a Unix socket that only its
 * owner (root) may open: file permissions are the authentication. A stale socket left by
 * a dead daemon is replaced; a live one is refused, so two daemons never share a socket.
 */
export async function startLocalApi (init: LocalApiInit): Promise<LocalApiServer> {
  const d = init.daemon
  const routes: Record<string, Route> = {
    '/v1/status': { method: 'GET', reply: LocalStatus, handle: async () => await d.status() },
    '/v1/peers': { method: 'GET', reply: LocalPeers, handle: () => d.peers() },
    '/v1/up': { method: 'POST', body: LocalUpRequest, reply: LocalStatus, handle: async (_q, b) => await d.up(b as LocalUpRequest) },
    '/v1/down': { method: 'POST', reply: LocalStatus, handle: async () => await d.down() },
    '/v1/ip': { method: 'GET', reply: LocalIpResponse, handle: q => d.ip(q.get('peer') ?? undefined, parseFamily(q.get('family'))) },
    '/v1/ping': { method: 'POST', body: LocalPingRequest, reply: LocalPingResponse, handle: async (_q, b) => await d.ping((b as LocalPingRequest).peer) },
    '/v1/whois': { method: 'GET', reply: LocalWhoisResponse, handle: q => d.whois(required(q, 'ip')) },
    '/v1/netcheck': { method: 'GET', reply: LocalNetcheck, handle: async () => await d.netcheck() }
  }

  const server = http.createServer((req, res) => {
    const started = Date.now()
    const url = new URL(req.url ?? '/', 'http://local')
    const reply = (status: number, body: unknown, type = 'application/json'): void => {
      const text = type === 'application/json' ? JSON.stringify(body) : String(body)
      res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(text) }).end(text)
      init.logger?.debug({ method: req.method, path: url.pathname, status, ms: Date.now() - started }, 'local api request')
    }
    const fail = (e: unknown): void => {
      const err = isWarrenError(e) ? e : new WarrenError('internal', `internal error: ${(e as Error).message}`, { status: 500 })
      if (err.status >= 500) init.logger?.warn({ path: url.pathname, code: err.code, err: err.message }, 'local api request failed')
      const body: ErrorBody = { error: { code: err.code, message: err.message.slice(0, 4000), ...(err.field !== undefined ? { field: err.field } : {}) } }
      reply(err.status, body)
    }

    if (url.pathname === '/metrics' && init.metrics !== undefined) {
      if (req.method !== 'GET') { fail(methodError(req.method, 'GET', url.pathname)); return }
      init.metrics.render().then(text => reply(200, text, init.metrics!.registry.contentType), fail)
      return
    }
    if (url.pathname === WATCH_PATH) {
      if (req.method !== 'GET') { fail(methodError(req.method, 'GET', url.pathname)); return }
      if (d.changes === undefined) { fail(new WarrenError('not_supported', 'this daemon cannot stream changes', { status: 501 })); return }
      serveWatch(d, d.changes, req, res).catch(fail)
      return
    }
    const route = routes[url.pathname]
    if (route === undefined) {
      fail(new WarrenError('not_found', `no LocalAPI route ${url.pathname}; routes are ${[...Object.keys(routes), WATCH_PATH].join(', ')}`, { status: 404 }))
      return
    }
    if (req.method !== route.method) { fail(methodError(req.method, route.method, url.pathname)); return }
    readBody(req).then(async text => {
      let body: unknown
      if (route.body !== undefined) {
        let parsed: unknown
        try { parsed = JSON.parse(text === '' ? 'null' : text) } catch (e) {
          throw new WarrenError('invalid_json', `request body is not valid JSON: ${(e as Error).message}`)
        }
        body = validate(route.body, parsed, `${url.pathname} request`)
      }
      const out = await route.handle(url.searchParams, body)
      let checked: unknown
      try { checked = validate(route.reply, out, `${url.pathname} answer`) } catch (e) {
        throw new WarrenError('internal', `the daemon built an invalid answer (a bug; please report it): ${(e as Error).message}`, { status: 500 })
      }
      reply(200, checked)
    }).catch(fail)
  })

  await removeStaleSocket(init.socketPath)
  await fs.mkdir(dirname(init.socketPath), { recursive: true, mode: 0o755 })
  await new Promise<void>((resolve, reject) => {
    server.once('error', e => reject(new WarrenError('listen_failed', `cannot serve the LocalAPI on ${init.socketPath}: ${e.message}`, { status: 500 })))
    // The umask makes the socket owner-only from birth; chmod below makes it explicit.
    const old = process.umask(0o177)
    try { server.listen(init.socketPath, resolve) } finally { process.umask(old) }
  })
  await fs.chmod(init.socketPath, 0o600)

  return {
    socketPath: init.socketPath,
    async close () {
      server.closeAllConnections()
      await new Promise<void>(resolve => server.close(() => resolve()))
      await fs.rm(init.socketPath, { force: true })
    }
  }
}

const WATCH_PATH = '/v1/watch'
/** a watcher that lets this much go unread is cut; it reconnects and starts from a snapshot */
const WATCH_MAX_BACKLOG = 4 * 1024 * 1024
/** changes that come close together are reported together */
const WATCH_COALESCE_MS = 50

/**
 * serveWatch streams GET /v1/watch: a snapshot, then the events between successive
 * statuses each time the daemon announces a change, one JSON object per line.
 */
async function serveWatch (d: LocalBackend, changes: Pick<ChangeFeed, 'subscribe'>, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  let last = await d.status()
  res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' })
  const send = (e: LocalWatchEvent): void => {
    res.write(JSON.stringify(validate(LocalWatchEvent, e, 'watch event')) + '\n')
    if (res.writableLength > WATCH_MAX_BACKLOG) res.destroy()
  }
  send({ type: 'snapshot', time: new Date().toISOString(), backendState: last.backendState, peers: last.peers })
  let timer: NodeJS.Timeout | undefined
  let policy = false
  let chain = Promise.resolve()
  const flush = async (): Promise<void> => {
    timer = undefined
    const applied = policy
    policy = false
    const next = await d.status()
    const time = new Date().toISOString()
    const events = diffStatus(last, next, time)
    last = next
    if (applied) events.push({ type: 'policy-applied', time })
    for (const e of events) send(e)
  }
  const unsubscribe = changes.subscribe(reason => {
    if (reason === 'policy') policy = true
    timer ??= setTimeout(() => { chain = chain.then(flush).catch(() => { res.destroy() }) }, WATCH_COALESCE_MS)
  })
  req.on('close', () => { unsubscribe(); clearTimeout(timer) })
}

function methodError (got: string | undefined, want: string, path: string): WarrenError {
  return new WarrenError('method_not_allowed', `${path} takes ${want}, not ${got ?? '?'}`, { status: 405 })
}

function parseFamily (s: string | null): 4 | 6 | undefined {
  if (s === null || s === '') return undefined
  if (s === '4' || s === '6') return Number(s) as 4 | 6
  throw new WarrenError('invalid_input', `family '${s}' must be 4 or 6`, { field: 'family' })
}

function required (q: URLSearchParams, name: string): string {
  const v = q.get(name)
  if (v === null || v === '') throw new WarrenError('invalid_input', `query parameter '${name}' is required`, { field: name })
  if (v.length > 300) throw new WarrenError('invalid_input', `query parameter '${name}' is too long`, { field: name })
  return v
}

async function readBody (req: http.IncomingMessage): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const c of req) {
    size += (c as Buffer).length
    if (size > MAX_BODY) throw new WarrenError('body_too_large', `request body is larger than ${MAX_BODY} bytes`, { status: 413 })
    chunks.push(c as Buffer)
  }
  return Buffer.concat(chunks).toString('utf8')
}

/** removeStaleSocket deletes a socket file nobody listens on, and refuses one that is alive. */
async function removeStaleSocket (path: string): Promise<void> {
  try { await fs.lstat(path) } catch { return }
  const alive = await new Promise<boolean>(resolve => {
    const s = net.connect(path)
    s.once('connect', () => { s.destroy(); resolve(true) })
    s.once('error', () => resolve(false))
  })
  if (alive) {
    throw new WarrenError('socket_in_use', `another daemon is already serving ${path}; stop it, or give this one its own --socket PATH`, { status: 409 })
  }
  await fs.rm(path, { force: true })
}
