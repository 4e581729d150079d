import { STATUS_CODES } from 'node:http'
import type { Duplex } from 'node:stream'
import type { ErrorBody } from '@warren/protocol'

/**
 * writeRawError writes a whole HTTP error response in the API's `{error: {code, message}}`
 * shape straight to a socket, then closes it: for the answers no fastify route gives
 * (malformed HTTP that node's server gave up on, refused WebSocket upgrades).
 */
export function writeRawError (socket: Duplex, status: number, code: string, message: string, extraHeaders = ''): void {
  if (!socket.writable) { socket.destroy(); return }
  const body: ErrorBody = { error: { code, message } }
  const text = JSON.stringify(body)
  const head = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\nContent-Type: application/json; charset=utf-8\r\n` +
    `Content-Length: ${Buffer.byteLength(text)}\r\n${extraHeaders}Connection: close\r\n\r\n`
  socket.end(head + text, () => { socket.destroy() })
}
