/**
 * createFakeSharedPort is an in-memory SharedPort for tests: it records what is sent and
 * lets the test deliver packets, or answer each send (a fake STUN server, a fake peer).
 */
import type { SharedPort, SharedPortPacket, UdpAddress } from './types.js'

/** FakeSend is one packet sent through the fake. */
export interface FakeSend { data: Uint8Array, to: UdpAddress, ttl?: number }

export interface FakeSharedPort extends SharedPort {
  /** sent lists every packet sent, in order */
  readonly sent: FakeSend[]
  /** deliver hands a packet to the handlers of its kind, as if it arrived on the WireGuard port */
  deliver: (p: SharedPortPacket) => void
  /** answer, when set, sees every send and may return packets to deliver in reply */
  answer?: (s: FakeSend) => SharedPortPacket[] | undefined
  /** failSends makes every send reject, as a socket with no route would */
  failSends: boolean
  readonly closed: boolean
}

/** createFakeSharedPort makes a fake on a WireGuard port (41641 by default). */
export function createFakeSharedPort (opts: { wgPort?: number } = {}): FakeSharedPort {
  const handlers = { stun: new Set<(p: SharedPortPacket) => void>(), control: new Set<(p: SharedPortPacket) => void>() }
  let closed = false
  const fake: FakeSharedPort = {
    wgPort: opts.wgPort ?? 41641,
    sent: [],
    failSends: false,
    get closed () { return closed },
    deliver: p => { for (const h of handlers[p.kind]) h(p) },
    async send (data, to, o) {
      if (closed) throw new Error('the shared port is closed')
      if (fake.failSends) throw new Error('send failed: network is unreachable (fake)')
      const s: FakeSend = { data, to, ...(o?.ttl !== undefined ? { ttl: o.ttl } : {}) }
      fake.sent.push(s)
      // replies arrive after the send returns, as on a network
      const replies = fake.answer?.(s) ?? []
      if (replies.length > 0) setImmediate(() => { for (const r of replies) fake.deliver(r) })
    },
    onPacket (kind, handler) {
      handlers[kind].add(handler)
      return () => { handlers[kind].delete(handler) }
    },
    async close () { closed = true }
  }
  return fake
}
