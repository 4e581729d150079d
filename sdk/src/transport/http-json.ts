import type { ClientRequest, IncomingMessage, RequestOptions } from 'node:http'
import { WarrenError, isWarrenError, validate, ErrorBody } from '@warren/protocol'

/** JsonResponse is what a transport's `request` resolves to: the status and the parsed body. */
export interface JsonResponse<T = unknown> {
  status: number
  body: T
}

/** JsonTransport is the part every transport shares: one JSON request, one answer. */
export interface JsonTransport {
  /** request sends `body` as JSON (when given) and parses a JSON answer; non-2xx is not an error here. */
  request<T = unknown>(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<JsonResponse<T>>
  close(): void
}

/** DEFAULT_TIMEOUT_MS bounds every request: a controller that hangs must not hang the CLI. */
export const DEFAULT_TIMEOUT_MS = 15_000

/** MAX_RESPONSE_BYTES caps what we buffer from one answer. */
const MAX_RESPONSE_BYTES = 64 * 1024 * 1024

/**
 * sendJson runs one request through `start` (http.request or https.request bound to
 * their options) and reads a JSON answer. `where` names the target in errors
 * ("controller at https://..." or "admin socket /x/admin.sock").
 */
export async function sendJson<T> (
  start: (opts: RequestOptions, cb: (res: IncomingMessage) => void) => ClientRequest,
  opts: RequestOptions,
  body: unknown,
  where: string,
  timeoutMs: number
): Promise<JsonResponse<T>> {
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body))
  const headers: Record<string, string | number> = { accept: 'application/json', ...(opts.headers as Record<string, string> | undefined) }
  if (payload !== undefined) {
    headers['content-type'] = 'application/json'
    headers['content-length'] = payload.length
  }
  return await new Promise<JsonResponse<T>>((resolve, reject) => {
    let settled = false
    const fail = (e: unknown): void => {
      if (settled) return
      settled = true
      reject(describeNetworkError(e, where))
    }
    const req = start({ ...opts, headers }, res => {
      const chunks: Buffer[] = []
      let size = 0
      res.on('data', (c: Buffer) => {
        size += c.length
        if (size > MAX_RESPONSE_BYTES) req.destroy(new WarrenError('response_too_large', `${where} sent an answer larger than ${MAX_RESPONSE_BYTES} bytes`, { status: 502 }))
        else chunks.push(c)
      })
      res.on('error', fail)
      res.on('end', () => {
        if (settled) return
        settled = true
        const text = Buffer.concat(chunks).toString('utf8')
        let parsed: unknown = text
        if (text !== '' && /json/.test(String(res.headers['content-type'] ?? 'application/json'))) {
          try { parsed = JSON.parse(text) } catch {
            reject(new WarrenError('bad_response', `${where} answered ${res.statusCode ?? 0} with a body that is not JSON: ${text.slice(0, 200)}`, { status: 502 }))
            return
          }
        } else if (text === '') parsed = undefined
        resolve({ status: res.statusCode ?? 0, body: parsed as T })
      })
    })
    req.setTimeout(timeoutMs, () => {
      req.destroy(new WarrenError('timeout', `${where} did not answer within ${formatMs(timeoutMs)}; check that it is running and reachable`, { status: 504 }))
    })
    req.on('error', fail)
    req.end(payload)
  })
}

/** formatMs shows a timeout the way people write it: 300ms, 15s. */
export function formatMs (ms: number): string {
  return ms < 1000 ? `${ms}ms` : `${Math.round(ms / 100) / 10}s`
}

/**
 * describeNetworkError turns a socket error into a WarrenError whose message says what
 * failed and what to check. WarrenErrors (such as fingerprint_mismatch) pass through.
 */
export function describeNetworkError (e: unknown, where: string): WarrenError {
  if (isWarrenError(e)) return e
  const err = e as NodeJS.ErrnoException
  const hints: Record<string, string> = {
    ECONNREFUSED: 'connection refused (is it running and listening there?)',
    ENOTFOUND: 'host name not found (check the spelling of the URL)',
    EAI_AGAIN: 'host name lookup failed (check DNS and the spelling of the URL)',
    ECONNRESET: 'connection reset (is it a Warren controller speaking HTTPS on that port?)',
    ETIMEDOUT: 'connection timed out (is a firewall in the way?)',
    EHOSTUNREACH: 'host unreachable (check the address and your network)',
    ENETUNREACH: 'network unreachable (check the address and your network)',
    ENOENT: 'no such socket (is the controller running with this state dir?)',
    EACCES: 'permission denied (the admin socket is root-only: run as root)',
    EPROTO: 'TLS handshake failed (is it a Warren controller speaking HTTPS on that port?)'
  }
  const code = err?.code ?? ''
  const hint = hints[code] ?? (/wrong version number|packet length too long/i.test(err?.message ?? '') ? hints.EPROTO! : err?.message ?? String(e))
  return new WarrenError('unreachable', `cannot reach ${where}: ${hint}`, { status: 503, cause: e })
}

/** expectOk returns a 2xx body or throws the server's error as a WarrenError. */
export function expectOk (res: { status: number, body: unknown }, doing: string): unknown {
  if (res.status >= 200 && res.status < 300) return res.body
  throw errorFromResponse(res, doing)
}

/** errorFromResponse turns an `{error: {code, message}}` answer into a WarrenError. */
export function errorFromResponse (res: { status: number, body: unknown }, doing: string): WarrenError {
  try {
    const e = validate(ErrorBody, res.body).error
    return new WarrenError(e.code, e.message, { status: res.status, ...(e.field !== undefined ? { field: e.field } : {}) })
  } catch {
    const text = typeof res.body === 'string' ? res.body.slice(0, 200) : JSON.stringify(res.body ?? '').slice(0, 200)
    return new WarrenError('bad_response', `controller answered ${res.status} while ${doing}: ${text}`, { status: 502 })
  }
}
