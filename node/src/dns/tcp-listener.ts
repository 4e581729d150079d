import net from 'node:net'
import { HEADER_SIZE, framed } from './dns-message.js'
import type { DnsLogger, ListenAddress, MagicDnsStats, QueryHandler } from './server-types.js'

/** TcpListenerInit: the handler and the bounds on each TCP client. */
export interface TcpListenerInit {
  handle: QueryHandler
  stats: MagicDnsStats
  /** clients holds every open connection, so close() can end them */
  clients: Set<net.Socket>
  maxConnections: number
  /** queries in progress per connection before it stops reading */
  maxPipeline: number
  idleMs: number
  maxQuerySize: number
  log: DnsLogger | undefined
}

/** bindTcpListener binds one TCP server that reads length-prefixed queries and pipelines the replies. */
export async function bindTcpListener (addr: ListenAddress, init: TcpListenerInit): Promise<net.Server> {
  const { log } = init
  return await new Promise((resolve, reject) => {
    const v6 = net.isIPv6(addr.address)
    const server = net.createServer({ pauseOnConnect: false }, sock => onTcpConnection(sock, init))
    server.maxConnections = init.maxConnections
    server.once('error', reject)
    server.listen({ host: addr.address, port: addr.port, ipv6Only: v6, exclusive: true }, () => {
      server.off('error', reject)
      server.on('error', err => log?.warn({ err: String(err) }, 'MagicDNS: TCP server error'))
      resolve(server)
    })
  })
}

/** onTcpConnection serves one client: it stops reading while maxPipeline queries are in progress. */
function onTcpConnection (sock: net.Socket, init: TcpListenerInit): void {
  const { handle, stats, clients, maxPipeline, idleMs, maxQuerySize } = init
  clients.add(sock)
  stats.tcpConnections++
  let buf = Buffer.alloc(0)
  let pending = 0
  sock.setTimeout(idleMs, () => sock.destroy())
  sock.on('error', () => {})
  sock.on('close', () => { clients.delete(sock); stats.tcpConnections-- })
  sock.on('data', chunk => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk])
    while (buf.length >= 2) {
      const len = buf.readUInt16BE(0)
      if (len < HEADER_SIZE || len > maxQuerySize) {
        stats.dropped++
        sock.destroy()
        return
      }
      if (buf.length < 2 + len) break
      const msg = buf.subarray(2, 2 + len)
      buf = buf.subarray(2 + len)
      if (++pending >= maxPipeline) sock.pause()
      handle(msg, false).then(reply => {
        if (reply !== undefined && !sock.destroyed) sock.write(framed(reply))
      }, () => {}).finally(() => {
        if (--pending < maxPipeline && sock.isPaused()) sock.resume()
      })
    }
  })
}
