import http from 'node:http'
import { createInterface } from 'node:readline'
import {
  WarrenError, validate, ErrorBody, LocalWatchEvent, LocalStatus, LocalPeers, LocalIpResponse, LocalPingResponse, LocalWhoisResponse, LocalNetcheck,
  type LocalUpRequest, type TSchema
} from '@warren/protocol'
import { createUnixTransport } from './transport/index.js'

/** DEFAULT_SOCKET_PATH is where the daemon's LocalAPI listens unless told otherwise. */
export const DEFAULT_SOCKET_PATH = '/var/run/warren/warrend.sock'

/** LocalClientInit says which daemon to talk to: `socketPath`, else $WARREN_SOCKET, else the default socket. */
export interface LocalClientInit {
  socketPath?: string
  /** per-request timeout; `up` and `ping` may take a few seconds */
  timeoutMs?: number
}

/**
 * LocalClient talks to a running warrend over its LocalAPI socket. Each method is one
 * route; answers are checked against the wire schemas, and failures are WarrenErrors
 * with the daemon's code and message.
 */
export interface LocalClient {
  readonly socketPath: string
  status(): Promise<LocalStatus>
  /** peers lists this node and its peers as the map has them: no traffic counters, so cheaper than status */
  peers(): Promise<LocalPeers>
  up(req: LocalUpRequest): Promise<LocalStatus>
  down(): Promise<LocalStatus>
  /** ip returns the mesh addresses of this node, or of `peer` (name, full name or address) */
  ip(opts?: { peer?: string, family?: 4 | 6 }): Promise<LocalIpResponse>
  ping(peer: string): Promise<LocalPingResponse>
  whois(ip: string): Promise<LocalWhoisResponse>
  /** netcheck asks the map's STUN servers, through the WireGuard port, how this node is seen (a few seconds) */
  netcheck(): Promise<LocalNetcheck>
  /** metrics returns the daemon's Prometheus text */
  metrics(): Promise<string>
  /**
   * watch streams the daemon's changes: a snapshot first, then each change as it happens,
   * until `signal` aborts (the iteration then ends) or the daemon goes away (it throws).
   */
  watch(opts?: { signal?: AbortSignal }): AsyncIterable<LocalWatchEvent>
}

/** resolveSocketPath applies the order: explicit option, $WARREN_SOCKET, default. */
export function resolveSocketPath (socketPath?: string): string {
  if (socketPath !== undefined && socketPath !== '') return socketPath
  const env = process.env.WARREN_SOCKET
  return env !== undefined && env !== '' ? env : DEFAULT_SOCKET_PATH
}

/** daemonUnreachable says why the daemon's socket did not answer, and what to do about it. */
function daemonUnreachable (socketPath: string, e: unknown): WarrenError {
  const errno = ((e as Error).cause as NodeJS.ErrnoException | undefined)?.code
  const why = errno === 'EACCES'
    ? `permission denied on ${socketPath}: the LocalAPI socket is root-only, so run this as root`
    : `no Warren daemon is answering on ${socketPath}${errno !== undefined ? ` (${errno})` : ''}: start one with 'warren node run --state-dir DIR' (as root), or point --socket / WARREN_SOCKET at its socket`
  return new WarrenError('daemon_unreachable', why, { status: 503, cause: e })
}

/** createLocalClient returns a client for the daemon on the resolved socket. */
export function createLocalClient (init: LocalClientInit = {}): LocalClient {
  const socketPath = resolveSocketPath(init.socketPath)
  const transport = createUnixTransport(socketPath, { timeoutMs: init.timeoutMs ?? 30_000, describe: `the Warren daemon at ${socketPath}` })

  async function call<S extends TSchema> (schema: S, method: string, path: string, body?: unknown): Promise<ReturnType<typeof validate<S>>> {
    let res
    try { res = await transport.request(method, path, body) } catch (e) {
      if ((e as WarrenError).code === 'unreachable') throw daemonUnreachable(socketPath, e)
      throw e
    }
    if (res.status >= 200 && res.status < 300) return validate(schema, res.body, `daemon answer to ${path}`)
    let err: ErrorBody['error']
    try { err = validate(ErrorBody, res.body).error } catch {
      throw new WarrenError('bad_response', `the daemon answered ${res.status} to ${path} with an unexpected body`, { status: 502 })
    }
    throw new WarrenError(err.code, err.message, { status: res.status, ...(err.field !== undefined ? { field: err.field } : {}) })
  }

  return {
    socketPath,
    status: async () => await call(LocalStatus, 'GET', '/v1/status'),
    peers: async () => await call(LocalPeers, 'GET', '/v1/peers'),
    up: async req => await call(LocalStatus, 'POST', '/v1/up', req),
    down: async () => await call(LocalStatus, 'POST', '/v1/down'),
    async ip (opts = {}) {
      const q = new URLSearchParams()
      if (opts.peer !== undefined) q.set('peer', opts.peer)
      if (opts.family !== undefined) q.set('family', String(opts.family))
      const qs = q.toString()
      return await call(LocalIpResponse, 'GET', `/v1/ip${qs === '' ? '' : `?${qs}`}`)
    },
    ping: async peer => await call(LocalPingResponse, 'POST', '/v1/ping', { peer }),
    whois: async ip => await call(LocalWhoisResponse, 'GET', `/v1/whois?${new URLSearchParams({ ip }).toString()}`),
    netcheck: async () => await call(LocalNetcheck, 'GET', '/v1/netcheck'),
    watch: (opts = {}) => watchDaemon(socketPath, opts.signal),
    async metrics () {
      const res = await transport.request<string>('GET', '/metrics')
      if (res.status !== 200) throw new WarrenError('bad_response', `the daemon answered ${res.status} to /metrics`, { status: 502 })
      return String(res.body)
    }
  }
}

/** watchDaemon reads GET /v1/watch line by line. */
async function * watchDaemon (socketPath: string, signal?: AbortSignal): AsyncGenerator<LocalWatchEvent> {
  signal?.throwIfAborted()
  const req = http.request({ socketPath, path: '/v1/watch', method: 'GET', agent: false })
  const onAbort = (): void => { req.destroy() }
  signal?.addEventListener('abort', onAbort, { once: true })
  try {
    const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
      req.once('response', resolve)
      req.once('error', e => reject(signal?.aborted === true ? signal.reason : daemonUnreachable(socketPath, Object.assign(new Error(e.message), { cause: e }))))
      req.end()
    })
    if (res.statusCode !== 200) {
      let text = ''
      for await (const c of res) text += String(c)
      let err: ErrorBody['error'] | undefined
      try { err = validate(ErrorBody, JSON.parse(text)).error } catch { /* not the error shape */ }
      throw new WarrenError(err?.code ?? 'bad_response', err?.message ?? `the daemon answered ${res.statusCode ?? '?'} to /v1/watch`, { status: res.statusCode ?? 502 })
    }
    try {
      for await (const line of createInterface({ input: res, crlfDelay: Infinity })) {
        if (line.trim() === '') continue
        yield validate(LocalWatchEvent, JSON.parse(line), 'daemon watch event')
      }
    } catch (e) {
      if (signal?.aborted === true) return
      throw e
    }
    if (signal?.aborted !== true) throw new WarrenError('daemon_unreachable', `the Warren daemon on ${socketPath} ended the watch (it stopped or restarted)`, { status: 503 })
  } finally {
    signal?.removeEventListener('abort', onAbort)
    req.destroy()
  }
}
