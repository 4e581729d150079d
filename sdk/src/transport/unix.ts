import http from 'node:http'
import { sendJson, DEFAULT_TIMEOUT_MS, type JsonTransport } from './http-json.js'

/**
 * UnixTransport speaks plain HTTP over a Unix socket: the controller's root-only admin
 * socket, or a daemon's LocalAPI. File permissions are the authentication.
 */
export interface UnixTransport extends JsonTransport {
  readonly socketPath: string
}

/** createUnixTransport makes a JSON transport to the HTTP server on `socketPath`. */
export function createUnixTransport (socketPath: string, opts: { timeoutMs?: number, describe?: string } = {}): UnixTransport {
  const where = opts.describe ?? `socket ${socketPath}`
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS
  return {
    socketPath,
    async request (method, path, body, headers) {
      return await sendJson((o, cb) => http.request(o, cb), {
        method,
        socketPath,
        path,
        agent: false,
        ...(headers !== undefined ? { headers } : {})
      }, body, where, timeoutMs)
    },
    close () {}
  }
}
