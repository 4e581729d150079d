import dgram from 'node:dgram'
import net from 'node:net'
import { randomInt } from 'node:crypto'
import type { DecodedPacket, Question } from 'dns-packet'
import { WarrenError, parseHostPort } from '@warren/protocol'
import { FLAG_QR, FLAG_TC, HEADER_SIZE, RCODE, clientUdpLimit, framed, rcodeOf, respond, sameQuestion, truncated, withId } from './dns-message.js'
import type { DnsLogger, MagicDnsStats } from './server-types.js'

/** Upstream is one resolver MagicDNS forwards non-mesh names to. */
export interface Upstream { host: string, port: number, family: 4 | 6, text: string }

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

/** Exchanges are the open upstream exchanges of one forwarder, so close() can end them. */
interface Exchanges {
  timeoutMs: number
  open: Set<() => void>
}

/**
 * exchange runs one upstream exchange under the timeout: `open` starts it, calls `done`
 * with the reply or an error, and returns what releases its socket. close() ends it early.
 */
async function exchange (ex: Exchanges, what: string, open: (done: (err: Error | undefined, reply?: Buffer) => void) => () => void): Promise<Buffer> {
  const { timeoutMs } = ex
  return await new Promise<Buffer>((resolve, reject) => {
    let settled = false
    let release: (() => void) | undefined
    const done = (err: Error | undefined, reply?: Buffer): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      ex.open.delete(abort)
      release?.()
      if (err !== undefined) reject(err); else resolve(reply!)
    }
    const abort = (): void => done(new Error('server closed'))
    const timer = setTimeout(() => done(new Error(`no ${what} answer within ${timeoutMs} ms`)), timeoutMs)
    ex.open.add(abort)
    release = open(done)
    if (settled) release()
  })
}

/** udpExchange sends one query to an upstream over UDP and waits for the matching reply. */
async function udpExchange (ex: Exchanges, up: Upstream, msg: Buffer, id: number, asked: Question): Promise<Buffer> {
  return await exchange(ex, 'UDP', done => {
    const sock = dgram.createSocket(up.family === 6 ? 'udp6' : 'udp4')
    sock.on('error', err => done(err))
    sock.on('message', reply => {
      // Anything but the reply to our id and question is ignored (late or forged packets).
      if (reply.length >= HEADER_SIZE && reply.readUInt16BE(0) === id && (reply.readUInt16BE(2) & FLAG_QR) !== 0 && sameQuestion(reply, asked)) done(undefined, reply)
    })
    sock.connect(up.port, up.host, () => sock.send(msg, err => { if (err != null) done(err) }))
    return () => sock.close()
  })
}

/** tcpExchange asks an upstream again over TCP, after its UDP reply came back truncated. */
async function tcpExchange (ex: Exchanges, up: Upstream, msg: Buffer, id: number, asked: Question): Promise<Buffer> {
  return await exchange(ex, 'TCP', done => {
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
}

/** ForwarderInit: the bounds on forwarding and the counters it updates. */
export interface ForwarderInit {
  upstreams: Upstream[]
  timeoutMs: number
  maxInFlight: number
  stats: MagicDnsStats
  log: DnsLogger | undefined
}

/** Forwarder sends non-mesh queries to the upstreams and remembers which one answered last. */
export interface Forwarder {
  readonly upstreams: Upstream[]
  /** use replaces the upstreams (already checked) and starts again from the first */
  use: (list: Upstream[]) => void
  forward: (q: DecodedPacket, raw: Buffer, udp: boolean) => Promise<Buffer>
  /** close ends every open exchange and stops trying further upstreams */
  close: () => void
}

/** createForwarder keeps forwarding apart from the listeners: it owns the upstream sockets. */
export function createForwarder (init: ForwarderInit): Forwarder {
  const { timeoutMs, maxInFlight, stats, log } = init
  let upstreams = init.upstreams
  let preferred = 0
  let closed = false
  const exchanges: Exchanges = { timeoutMs, open: new Set() }

  const servfail = (q: DecodedPacket): Buffer => {
    stats.servfail++
    return respond(q, RCODE.SERVFAIL)
  }

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
          let reply = await udpExchange(exchanges, up, msg, id, asked)
          if ((reply.readUInt16BE(2) & FLAG_TC) !== 0) {
            try {
              reply = await tcpExchange(exchanges, up, msg, id, asked)
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

  return {
    get upstreams () { return upstreams },
    use (list) {
      upstreams = list
      preferred = 0
    },
    forward,
    close () {
      closed = true
      for (const abort of [...exchanges.open]) abort()
    }
  }
}
