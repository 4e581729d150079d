import dgram from 'node:dgram'
import net from 'node:net'
import { randomInt } from 'node:crypto'
import dnsPacket, { type Answer, type DecodedPacket, type Question } from 'dns-packet'
import { WarrenError, parseHostPort } from '@warren/protocol'
import type { MeshAnswer, MeshRecordsProvider } from './records.js'

/**
 * server.ts is the MagicDNS server: it answers mesh names from the current record set
 * and forwards every other query to the host's previous resolvers, over UDP and TCP.
 * Encoding is dns-packet's; forwarded messages travel as the client's own bytes, with
 * only the 16-bit id swapped (a fresh random id and socket per upstream exchange, so an
 * off-path attacker cannot guess the reply), and the client's id restored on the way back.
 */

/** ListenAddress is one address the server binds, on UDP and TCP alike. */
export interface ListenAddress {
  address: string
  /** 0 picks a free port, the same one for UDP and TCP */
  port: number
}

/** DnsLogger is the part of a pino logger the server uses. */
export interface DnsLogger {
  debug: (obj: object, msg?: string) => void
  warn: (obj: object, msg?: string) => void
}

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

/** MagicDnsStats counts what the server did since it started. */
export interface MagicDnsStats {
  queries: number
  answeredLocally: number
  forwarded: number
  servfail: number
  dropped: number
  overloaded: number
  inFlight: number
  tcpConnections: number
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

interface Upstream { host: string, port: number, family: 4 | 6, text: string }

const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const
const FLAG_QR = 0x8000
const FLAG_TC = dnsPacket.TRUNCATED_RESPONSE
const FLAG_RD = dnsPacket.RECURSION_DESIRED
const FLAG_CD = dnsPacket.CHECKING_DISABLED
const HEADER_SIZE = 12
const MIN_UDP_PAYLOAD = 512
/** OUR_UDP_PAYLOAD is the EDNS size we advertise: the DNS flag day 2020 value. */
const OUR_UDP_PAYLOAD = 1232
const MAX_UDP_PAYLOAD = 4096

// dns-packet codes a single question at runtime but its types do not say so.
const questionCodec = (dnsPacket as unknown as { question: { decode: (buf: Buffer, offset: number) => Question, encode: (q: Question, buf: Buffer, offset: number) => Question, encodingLength: (q: Question) => number } }).question

/** parseUpstream reads `ip`, `ip:port` or `[ipv6]:port` into an upstream resolver address. */
export function parseUpstream (s: string): Upstream {
  const bad = (): WarrenError => new WarrenError('bad_upstream',
    `DNS upstream '${s}' is not an address: use an IP, IP:PORT or [IPv6]:PORT (for example 192.0.2.53 or [2001:db8::53]:53)`,
    { field: 'upstreams' })
  let host = s.trim()
  let port = 53
  if (net.isIP(host.split('%')[0]!) === 0 && !/^\[[^\]]+\]$/.test(host)) {
    try {
      ({ host, port } = parseHostPort(host, 'upstreams'))
    } catch {
      throw bad()
    }
  } else if (host.startsWith('[')) {
    host = host.slice(1, -1)
  }
  const family = net.isIP(host.split('%')[0]!)
  if ((family !== 4 && family !== 6) || !Number.isInteger(port) || port < 1 || port > 65535) throw bad()
  return { host, port, family, text: s }
}

/** clientUdpLimit is the largest UDP reply the client accepts: 512, or its EDNS size up to 4096. */
function clientUdpLimit (q: DecodedPacket): number {
  const opt = (q.additionals ?? []).find(a => a.type === 'OPT') as { udpPayloadSize?: number } | undefined
  if (opt?.udpPayloadSize === undefined) return MIN_UDP_PAYLOAD
  return Math.max(MIN_UDP_PAYLOAD, Math.min(opt.udpPayloadSize, MAX_UDP_PAYLOAD))
}

/** sameQuestion checks that an upstream reply answers what we asked (DNS names are case-insensitive). */
function sameQuestion (reply: Buffer, asked: Question): boolean {
  try {
    if (reply.readUInt16BE(4) !== 1) return false
    const got = questionCodec.decode(reply, HEADER_SIZE)
    return got.type === asked.type && got.name.toLowerCase() === asked.name.toLowerCase()
  } catch {
    return false
  }
}

/**
 * echoable says whether a query's questions encode back to the bytes they came as, so
 * that a reply can repeat them: dns-packet reads labels as UTF-8 text, and a stray byte
 * would come back as a different, even over-long, label.
 */
function echoable (raw: Buffer, questions: Question[]): boolean {
  try {
    const again = Buffer.concat(questions.map(q => {
      const buf = Buffer.alloc(questionCodec.encodingLength(q))
      questionCodec.encode(q, buf, 0)
      return buf
    }))
    return raw.subarray(HEADER_SIZE, HEADER_SIZE + again.length).equals(again)
  } catch {
    return false
  }
}

function withId (msg: Buffer, id: number): Buffer {
  const copy = Buffer.from(msg)
  copy.writeUInt16BE(id, 0)
  return copy
}

/** framed prefixes a message with its 16-bit length, as DNS over TCP sends it. */
function framed (msg: Buffer): Buffer {
  const out = Buffer.alloc(2 + msg.length)
  out.writeUInt16BE(msg.length, 0)
  msg.copy(out, 2)
  return out
}

function rcodeOf (msg: Buffer): number {
  return msg.readUInt16BE(2) & 0xf
}

/** createMagicDnsServer makes a MagicDNS server; call `start()` to bind it. */
export function createMagicDnsServer (opts: MagicDnsServerOptions): MagicDnsServer {
  const timeoutMs = opts.upstreamTimeoutMs ?? 2000
  const maxInFlight = opts.maxInFlight ?? 512
  const maxTcpConnections = opts.maxTcpConnections ?? 256
  const maxPipeline = opts.maxTcpPipeline ?? 32
  const idleMs = opts.tcpIdleTimeoutMs ?? 10_000
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
  let upstreams = checkUpstreams(opts.upstreams ?? [])
  let preferred = 0
  let closed = false

  const stats: MagicDnsStats = { queries: 0, answeredLocally: 0, forwarded: 0, servfail: 0, dropped: 0, overloaded: 0, inFlight: 0, tcpConnections: 0 }
  const udpSockets: dgram.Socket[] = []
  const tcpServers: net.Server[] = []
  const tcpClients = new Set<net.Socket>()
  /** open upstream exchanges, so close() can end them */
  const exchanges = new Set<() => void>()

  const respond = (q: DecodedPacket, rcode: number, answers: Answer[] = [], authorities: Answer[] = [], flags = 0): Buffer => {
    const hasOpt = (q.additionals ?? []).some(a => a.type === 'OPT')
    return dnsPacket.encode({
      type: 'response',
      id: q.id,
      flags: flags | dnsPacket.RECURSION_AVAILABLE | ((q.flags ?? 0) & (FLAG_RD | FLAG_CD)) | rcode,
      questions: q.questions,
      answers,
      authorities,
      additionals: hasOpt ? [{ type: 'OPT', name: '.', udpPayloadSize: OUR_UDP_PAYLOAD, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] }] : []
    })
  }

  /** truncated is the reply that tells a UDP client to ask again over TCP. */
  const truncated = (q: DecodedPacket, rcode: number): Buffer => respond(q, rcode, [], [], FLAG_TC)

  const servfail = (q: DecodedPacket): Buffer => {
    stats.servfail++
    return respond(q, RCODE.SERVFAIL)
  }

  const local = (q: DecodedPacket, m: MeshAnswer, udp: boolean): Buffer => {
    stats.answeredLocally++
    const klass = q.questions![0]!.class ?? 'IN'
    const answers = klass === 'IN' || klass === 'ANY' ? m.answers : []
    const out = respond(q, RCODE[m.rcode], answers, m.authorities, dnsPacket.AUTHORITATIVE_ANSWER)
    return udp && out.length > clientUdpLimit(q) ? truncated(q, RCODE[m.rcode]) : out
  }

  /**
   * exchange runs one upstream exchange under the timeout: `open` starts it, calls `done`
   * with the reply or an error, and returns what releases its socket. close() ends it early.
   */
  const exchange = async (what: string, open: (done: (err: Error | undefined, reply?: Buffer) => void) => () => void): Promise<Buffer> =>
    await new Promise<Buffer>((resolve, reject) => {
      let settled = false
      let release: (() => void) | undefined
      const done = (err: Error | undefined, reply?: Buffer): void => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        exchanges.delete(abort)
        release?.()
        if (err !== undefined) reject(err); else resolve(reply!)
      }
      const abort = (): void => done(new Error('server closed'))
      const timer = setTimeout(() => done(new Error(`no ${what} answer within ${timeoutMs} ms`)), timeoutMs)
      exchanges.add(abort)
      release = open(done)
      if (settled) release()
    })

  const udpExchange = async (up: Upstream, msg: Buffer, id: number, asked: Question): Promise<Buffer> =>
    await exchange('UDP', done => {
      const sock = dgram.createSocket(up.family === 6 ? 'udp6' : 'udp4')
      sock.on('error', err => done(err))
      sock.on('message', reply => {
        // Anything but the reply to our id and question is ignored (late or forged packets).
        if (reply.length >= HEADER_SIZE && reply.readUInt16BE(0) === id && (reply.readUInt16BE(2) & FLAG_QR) !== 0 && sameQuestion(reply, asked)) done(undefined, reply)
      })
      sock.connect(up.port, up.host, () => sock.send(msg, err => { if (err != null) done(err) }))
      return () => sock.close()
    })

  const tcpExchange = async (up: Upstream, msg: Buffer, id: number, asked: Question): Promise<Buffer> =>
    await exchange('TCP', done => {
      const sock = net.connect({ host: up.host, port: up.port })
      let buf = Buffer.alloc(0)
      sock.on('error', err => done(err))
      sock.on('close', () => done(new Error('upstream closed the TCP connection')))
      sock.on('connect', () => sock.write(framed(msg)))
      sock.on('data', chunk => {
        buf = Buffer.concat([buf, chunk])
        if (buf.length < 2 || buf.length < 2 + buf.readUInt16BE(0)) return
        const reply = buf.subarray(2, 2 + buf.readUInt16BE(0))
        if (reply.length >= HEADER_SIZE && reply.readUInt16BE(0) === id && sameQuestion(reply, asked)) done(undefined, reply)
        else done(new Error('upstream TCP reply does not match the query'))
      })
      return () => sock.destroy()
    })

  /** forward asks the upstreams in turn, from the last one that worked. */
  const forward = async (q: DecodedPacket, raw: Buffer, udp: boolean): Promise<Buffer> => {
    if (upstreams.length === 0) return servfail(q)
    if (stats.inFlight >= maxInFlight) {
      stats.overloaded++
      return servfail(q)
    }
    stats.inFlight++
    stats.forwarded++
    const asked = q.questions![0]!
    const list = upstreams
    try {
      for (let i = 0; i < list.length && !closed; i++) {
        const index = (preferred + i) % list.length
        const up = list[index]!
        const id = randomInt(0, 0x10000)
        const msg = withId(raw, id)
        try {
          let reply = await udpExchange(up, msg, id, asked)
          if ((reply.readUInt16BE(2) & FLAG_TC) !== 0) {
            try {
              reply = await tcpExchange(up, msg, id, asked)
            } catch (err) {
              log?.debug({ upstream: up.text, err: String(err) }, 'MagicDNS: TCP fallback failed')
              // A UDP client can still ask us over TCP when it sees the truncated reply.
              if (!udp) continue
            }
          }
          const rcode = rcodeOf(reply)
          if (rcode === RCODE.SERVFAIL || rcode === RCODE.REFUSED) {
            log?.debug({ upstream: up.text, rcode }, 'MagicDNS: upstream refused, trying the next')
            continue
          }
          if (list === upstreams) preferred = index
          const out = withId(reply, q.id ?? 0)
          return udp && out.length > clientUdpLimit(q) ? truncated(q, rcode) : out
        } catch (err) {
          log?.debug({ upstream: up.text, err: String(err) }, 'MagicDNS: upstream failed, trying the next')
        }
      }
      log?.warn({ name: asked.name, upstreams: list.map(u => u.text) }, 'MagicDNS: every upstream failed')
      return servfail(q)
    } finally {
      stats.inFlight--
    }
  }

  /** handle turns one query into its reply, or undefined to drop it. */
  const handle = async (raw: Buffer, udp: boolean): Promise<Buffer | undefined> => {
    stats.queries++
    let q: DecodedPacket
    try {
      if (raw.length < HEADER_SIZE || raw.length > maxQuerySize) throw new Error('bad size')
      q = dnsPacket.decode(raw)
    } catch {
      stats.dropped++
      return undefined
    }
    if (q.type !== 'query') { stats.dropped++; return undefined }
    try {
      if (!echoable(raw, q.questions ?? [])) return respond({ ...q, questions: [] }, RCODE.FORMERR)
      if ((q as { opcode?: string }).opcode !== 'QUERY') return respond(q, RCODE.NOTIMP)
      if (q.questions?.length !== 1) return respond({ ...q, questions: [] }, RCODE.FORMERR)
      const question = q.questions[0]!
      const mesh = opts.records.current()?.resolve(question.name, question.type)
      if (mesh !== undefined) return local(q, mesh, udp)
      return await forward(q, raw, udp)
    } catch (err) {
      // A query dns-packet can read but not write back (odd names or classes) is dropped.
      log?.debug({ err: String(err) }, 'MagicDNS: could not answer a query')
      stats.dropped++
      return undefined
    }
  }

  const bindUdp = async (addr: ListenAddress): Promise<dgram.Socket> =>
    await new Promise((resolve, reject) => {
      const v6 = net.isIPv6(addr.address)
      const sock = dgram.createSocket({ type: v6 ? 'udp6' : 'udp4', ipv6Only: v6 })
      sock.once('error', reject)
      sock.bind(addr.port, addr.address, () => {
        sock.off('error', reject)
        sock.on('error', err => log?.warn({ err: String(err) }, 'MagicDNS: UDP socket error'))
        sock.on('message', (msg, rinfo) => {
          handle(msg, true).then(reply => {
            if (reply !== undefined && !closed) sock.send(reply, rinfo.port, rinfo.address, () => {})
          }, () => {})
        })
        resolve(sock)
      })
    })

  const onTcpConnection = (sock: net.Socket): void => {
    tcpClients.add(sock)
    stats.tcpConnections++
    let buf = Buffer.alloc(0)
    let pending = 0
    sock.setTimeout(idleMs, () => sock.destroy())
    sock.on('error', () => {})
    sock.on('close', () => { tcpClients.delete(sock); stats.tcpConnections-- })
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

  const bindTcp = async (addr: ListenAddress): Promise<net.Server> =>
    await new Promise((resolve, reject) => {
      const v6 = net.isIPv6(addr.address)
      const server = net.createServer({ pauseOnConnect: false }, onTcpConnection)
      server.maxConnections = maxTcpConnections
      server.once('error', reject)
      server.listen({ host: addr.address, port: addr.port, ipv6Only: v6, exclusive: true }, () => {
        server.off('error', reject)
        server.on('error', err => log?.warn({ err: String(err) }, 'MagicDNS: TCP server error'))
        resolve(server)
      })
    })

  /** bindBoth binds UDP and TCP on one port; with port 0 it retries if TCP finds UDP's port taken. */
  const bindBoth = async (addr: ListenAddress): Promise<ListenAddress> => {
    for (let attempt = 0; ; attempt++) {
      const udp = await bindUdp(addr)
      const port = udp.address().port
      try {
        const tcp = await bindTcp({ address: addr.address, port })
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
        checkUpstreams(upstreams.map(u => u.text))
      } catch (err) {
        await server.close()
        throw err
      }
      log?.debug({ listen: bound }, 'MagicDNS listening')
      return bound
    },
    setUpstreams (list: string[]) {
      upstreams = checkUpstreams(list)
      preferred = 0
    },
    get upstreams () { return upstreams.map(u => u.text) },
    stats: () => ({ ...stats }),
    answer: async (query, transport) => await handle(query, transport === 'udp'),
    async close () {
      closed = true
      for (const abort of [...exchanges]) abort()
      for (const c of tcpClients) c.destroy()
      await Promise.all([
        ...udpSockets.splice(0).map(async s => await new Promise<void>(resolve => s.close(() => resolve()))),
        ...tcpServers.splice(0).map(async s => await new Promise<void>(resolve => s.close(() => resolve())))
      ])
    }
  }
  return server
}
