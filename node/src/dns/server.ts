import type dgram from 'node:dgram'
import type net from 'node:net'
import { WarrenError } from '@warren/protocol'
import type { MeshRecordsProvider } from './records.js'
import { createQueryHandler } from './dns-answer.js'
import { createForwarder, parseUpstream, type Upstream } from './upstream.js'
import { bindUdpListener } from './udp-listener.js'
import { bindTcpListener } from './tcp-listener.js'
import type { DnsLogger, ListenAddress, MagicDnsStats } from './server-types.js'

export type { DnsLogger, ListenAddress, MagicDnsStats } from './server-types.js'
export { parseUpstream } from './upstream.js'

/**
 * server.ts is the MagicDNS server: it answers mesh names from the current record set
 * and forwards every other query to the host's previous resolvers, over UDP and TCP.
 * Encoding is dns-packet's; forwarded messages travel as the client's own bytes, with
 * only the 16-bit id swapped (a fresh random id and socket per upstream exchange, so an
 * off-path attacker cannot guess the reply), and the client's id restored on the way back.
 */

/** MagicDnsServerOptions: where to listen, where to forward, and the bounds on work. */
export interface MagicDnsServerOptions {
  listen: ListenAddress[]
  /** resolvers for non-mesh names: `ip`, `ip:port` or `[ipv6]:port`; empty means SERVFAIL */
  upstreams?: string[]
  records: MeshRecordsProvider
  logger?: DnsLogger
  /** time to wait for one upstream before trying the next (ms) */
  upstreamTimeoutMs?: number
  /** forwards in progress at once; more get SERVFAIL at once */
  maxInFlight?: number
  maxTcpConnections?: number
  /** queries in progress per TCP connection before it stops reading */
  maxTcpPipeline?: number
  /** a TCP connection without traffic for this long is closed (ms) */
  tcpIdleTimeoutMs?: number
  /** largest query accepted, UDP or TCP (bytes) */
  maxQuerySize?: number
}

/** MagicDnsServer is one running MagicDNS resolver (UDP and TCP on every listen address). */
export interface MagicDnsServer {
  /** start binds every listen address; the result lists them with their bound port */
  start: () => Promise<ListenAddress[]>
  /** setUpstreams replaces the forwarders (checked first; a bad entry changes nothing) */
  setUpstreams: (upstreams: string[]) => void
  readonly upstreams: readonly string[]
  stats: () => MagicDnsStats
  /**
   * answer is the reply to one query message exactly as a UDP or TCP listener would send
   * it (without the TCP length prefix), or undefined when the query is dropped. It needs
   * no socket, so tests can feed the handler packets directly.
   */
  answer: (query: Buffer, transport: 'udp' | 'tcp') => Promise<Buffer | undefined>
  close: () => Promise<void>
}

/** createMagicDnsServer makes a MagicDNS server; call `start()` to bind it. */
export function createMagicDnsServer (opts: MagicDnsServerOptions): MagicDnsServer {
  const maxQuerySize = opts.maxQuerySize ?? 4096
  const log = opts.logger
  /** listening is where we answer, so that no upstream can point back at us (a loop) */
  let listening: ListenAddress[] = opts.listen.filter(a => a.port !== 0)
  const checkUpstreams = (list: string[]): Upstream[] => list.map(parseUpstream).map(up => {
    if (listening.some(l => l.address === up.host && l.port === up.port)) {
      throw new WarrenError('upstream_loop', `DNS upstream '${up.text}' is MagicDNS itself: leave it out of the upstreams (it would forward to itself)`, { field: 'upstreams' })
    }
    return up
  })
  let closed = false

  const stats: MagicDnsStats = { queries: 0, answeredLocally: 0, forwarded: 0, servfail: 0, dropped: 0, overloaded: 0, inFlight: 0, tcpConnections: 0 }
  const forwarder = createForwarder({
    upstreams: checkUpstreams(opts.upstreams ?? []),
    timeoutMs: opts.upstreamTimeoutMs ?? 2000,
    maxInFlight: opts.maxInFlight ?? 512,
    stats,
    log
  })
  const udpSockets: dgram.Socket[] = []
  const tcpServers: net.Server[] = []
  const tcpClients = new Set<net.Socket>()

  /** handle turns one query into its reply, or undefined to drop it. */
  const handle = createQueryHandler({ records: opts.records, forward: forwarder.forward, maxQuerySize, stats, log })

  const tcpInit = {
    handle,
    stats,
    clients: tcpClients,
    maxConnections: opts.maxTcpConnections ?? 256,
    maxPipeline: opts.maxTcpPipeline ?? 32,
    idleMs: opts.tcpIdleTimeoutMs ?? 10_000,
    maxQuerySize,
    log
  }

  /** bindBoth binds UDP and TCP on one port; with port 0 it retries if TCP finds UDP's port taken. */
  const bindBoth = async (addr: ListenAddress): Promise<ListenAddress> => {
    for (let attempt = 0; ; attempt++) {
      const udp = await bindUdpListener(addr, { handle, isClosed: () => closed, log })
      const port = udp.address().port
      try {
        const tcp = await bindTcpListener({ address: addr.address, port }, tcpInit)
        udpSockets.push(udp)
        tcpServers.push(tcp)
        return { address: addr.address, port }
      } catch (err) {
        udp.close()
        if (addr.port !== 0 || attempt >= 10 || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err
      }
    }
  }

  const server: MagicDnsServer = {
    async start () {
      const bound: ListenAddress[] = []
      try {
        for (const addr of opts.listen) bound.push(await bindBoth(addr))
      } catch (err) {
        await server.close()
        const e = err as NodeJS.ErrnoException
        throw new WarrenError('dns_listen_failed',
          `MagicDNS cannot listen on ${opts.listen.map(a => `${a.address}:${a.port}`).join(', ')}: ${e.message}` +
          (e.code === 'EADDRNOTAVAIL' ? ' (the address must be on an interface first)' : e.code === 'EACCES' ? ' (port 53 needs root or CAP_NET_BIND_SERVICE)' : ''),
          { status: 500, cause: err })
      }
      listening = bound
      try {
        checkUpstreams(forwarder.upstreams.map(u => u.text))
      } catch (err) {
        await server.close()
        throw err
      }
      log?.debug({ listen: bound }, 'MagicDNS listening')
      return bound
    },
    setUpstreams (list: string[]) {
      forwarder.use(checkUpstreams(list))
    },
    get upstreams () { return forwarder.upstreams.map(u => u.text) },
    stats: () => ({ ...stats }),
    answer: async (query, transport) => await handle(query, transport === 'udp'),
    async close () {
      closed = true
      forwarder.close()
      for (const c of tcpClients) c.destroy()
      await Promise.all([
        ...udpSockets.splice(0).map(async s => await new Promise<void>(resolve => s.close(() => resolve()))),
        ...tcpServers.splice(0).map(async s => await new Promise<void>(resolve => s.close(() => resolve())))
      ])
    }
  }
  return server
}
