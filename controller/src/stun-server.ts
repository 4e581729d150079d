/**
 * StunServer answers STUN binding requests (RFC 5389) with the source address they came
 * from (XOR-MAPPED-ADDRESS), so a node learns the public mapping of its WireGuard port.
 * It answers on two UDP ports (3478 and 3479 by default): two servers tell an
 * endpoint-independent mapping (the same mapped port toward both) from a symmetric one,
 * and until relays answer STUN of their own the controller's second port is the second
 * server. Linux's `masquerade fully-random`, the common symmetric NAT, maps each
 * destination port apart, so two ports of one address tell it. Anything but a binding
 * request is ignored, and each source address gets at most `ratePerSecond` answers a
 * second (a token bucket with a burst of twice that), so the server cannot be used to
 * flood anyone.
 */
import dgram from 'node:dgram'
import { isIP } from 'node:net'
import { encodeStunBindingResponse, parseStunBindingRequest, WarrenError } from '@warren/protocol'

export interface StunServerOptions {
  /** address to bind ('' or 0.0.0.0: every IPv4 address; '::' every address) */
  host: string
  /** the first port; the second server answers on port + 1. 0 picks two free ports (tests) */
  port: number
  /** answers per second per source address (default 20) */
  ratePerSecond?: number
  /** how many sources are tracked before the oldest are forgotten (default 10,000) */
  maxSources?: number
}

export interface StunServer {
  /** ports answered on, first and second server */
  ports: [number, number]
  /** answered and limited count binding requests, for tests and metrics */
  stats: () => { answered: number, limited: number }
  close: () => Promise<void>
}

interface Bucket { tokens: number, at: number }

/** plainAddress turns an IPv4-mapped IPv6 source (a dual-stack socket's) back into IPv4. */
function plainAddress (a: string): string {
  return a.startsWith('::ffff:') && isIP(a.slice(7)) === 4 ? a.slice(7) : a
}

async function bindUdp (host: string, port: number): Promise<dgram.Socket> {
  const v6 = isIP(host) === 6
  const sock = dgram.createSocket({ type: v6 ? 'udp6' : 'udp4' })
  await new Promise<void>((resolve, reject) => {
    sock.once('error', reject)
    sock.bind({ address: host === '' ? '0.0.0.0' : host, port, exclusive: true }, () => { sock.off('error', reject); resolve() })
  })
  return sock
}

/** startStunServer binds both ports; it throws WarrenError `stun_listen_failed` naming the port when one is taken. */
export async function startStunServer (opts: StunServerOptions): Promise<StunServer> {
  const rate = opts.ratePerSecond ?? 20
  const maxSources = opts.maxSources ?? 10_000
  const buckets = new Map<string, Bucket>()
  let answered = 0
  let limited = 0

  /** allow takes a token from the source's bucket; a Map keeps insertion order, so the oldest go first */
  const allow = (source: string, now: number): boolean => {
    let b = buckets.get(source)
    if (b === undefined) {
      if (buckets.size >= maxSources) buckets.delete(buckets.keys().next().value!)
      b = { tokens: rate * 2, at: now }
      buckets.set(source, b)
    }
    b.tokens = Math.min(rate * 2, b.tokens + (now - b.at) * rate / 1000)
    b.at = now
    if (b.tokens < 1) return false
    b.tokens -= 1
    return true
  }

  const sockets: dgram.Socket[] = []
  const close = async (): Promise<void> => {
    await Promise.all(sockets.map(async s => await new Promise<void>(resolve => s.close(() => resolve()))))
    sockets.length = 0
  }
  const serve = (sock: dgram.Socket): void => {
    sock.on('message', (msg, r) => {
      const req = parseStunBindingRequest(msg)
      if (req === undefined) return
      const address = plainAddress(r.address)
      if (!allow(address, performance.now())) { limited++; return }
      answered++
      sock.send(encodeStunBindingResponse(req.txid, { address, port: r.port }), r.port, r.address)
    })
    sock.on('error', () => undefined)
  }
  try {
    for (const want of [opts.port, opts.port === 0 ? 0 : opts.port + 1]) {
      const sock = await bindUdp(opts.host, want).catch((e: Error) => {
        throw new WarrenError('stun_listen_failed', `cannot answer STUN on UDP ${opts.host === '' ? '*' : opts.host}:${want}: ${e.message} (choose another with --stun-port, or 0 to turn STUN off)`, { field: 'stunPort' })
      })
      sockets.push(sock)
      serve(sock)
    }
  } catch (e) {
    await close()
    throw e
  }
  return {
    ports: [sockets[0]!.address().port, sockets[1]!.address().port],
    stats: () => ({ answered, limited }),
    close
  }
}
