import dgram from 'node:dgram'
import net from 'node:net'
import type { DnsLogger, ListenAddress, QueryHandler } from './server-types.js'

/** UdpListenerInit: what a bound UDP socket answers with, and when it must stay quiet. */
export interface UdpListenerInit {
  handle: QueryHandler
  /** isClosed is checked before each reply, so nothing is sent after close() */
  isClosed: () => boolean
  log: DnsLogger | undefined
}

/** bindUdpListener binds one UDP socket and answers each datagram with `handle`'s reply. */
export async function bindUdpListener (addr: ListenAddress, init: UdpListenerInit): Promise<dgram.Socket> {
  const { handle, isClosed, log } = init
  return await new Promise((resolve, reject) => {
    const v6 = net.isIPv6(addr.address)
    const sock = dgram.createSocket({ type: v6 ? 'udp6' : 'udp4', ipv6Only: v6 })
    sock.once('error', reject)
    sock.bind(addr.port, addr.address, () => {
      sock.off('error', reject)
      sock.on('error', err => log?.warn({ err: String(err) }, 'MagicDNS: UDP socket error'))
      sock.on('message', (msg, rinfo) => {
        handle(msg, true).then(reply => {
          if (reply !== undefined && !isClosed()) sock.send(reply, rinfo.port, rinfo.address, () => {})
        }, () => {})
      })
      resolve(sock)
    })
  })
}
