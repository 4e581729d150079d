import { createSocket, type Socket, type RemoteInfo } from 'node:dgram'
import { isIP } from 'node:net'
import {
  openRelayBind, encodeRelayBindAck, createReplayWindow, newAllocationId, isAllocationId, decodeControl, ControlKind,
  parseStunBindingRequest, encodeStunBindingResponse, createSerialQueue, formatHostPort, isWireGuardKey
} from '@warren/protocol'
import { createRelayFirewall, type RelayFirewall } from './relay-firewall.js'
import { applySysctls, relaySysctlPlan, procSysctls, type Sysctls, type SysctlRestore } from './sysctls.js'
import { createTokenBuckets } from './token-bucket.js'
import type { RelayKeyPair } from './relay-key.js'
import type { Forward } from './relay-nft.js'
import { runCommand } from './command.js'

/** RelayLogger is the slice of a pino logger the relay writes to. */
export interface RelayLogger {
  info: (obj: object, msg?: string) => void
  warn: (obj: object, msg?: string) => void
  debug: (obj: object, msg?: string) => void
}

/** IpFamily is 4 or 6, as node:net's isIP names them. */
export type IpFamily = 4 | 6

/** PortRange is an inclusive range of UDP ports the relay allocates from. */
export interface PortRange { first: number, last: number }

export interface UdpRelayOptions {
  key: RelayKeyPair
  /**
   * address of the control port (STUN) and the allocated ports; default 0.0.0.0, or `::`
   * (IPv4 and IPv6) when publicHost or publicHost6 is an IPv6 address
   */
  listenHost?: string
  /** the control port; 0 picks a free one */
  port: number
  /** the host nodes reach the relay at (in endpoints); default: listenHost */
  publicHost?: string
  /**
   * the IPv6 address nodes reach a dual-stack relay at, besides publicHost (an IPv4
   * address or a name): the relay listens on both families and announces both endpoints
   */
  publicHost6?: string
  /** ports for allocations; default 40000-40999 */
  portRange?: PortRange
  /** default: nftables through the system's nft */
  firewall?: RelayFirewall
  /** default: /proc/sys; false leaves kernel settings alone (tests that set them themselves) */
  sysctls?: Sysctls | false
  /** binds each side of an allocation may send: burst and per second (default 10, 2/s) */
  bindRate?: { burst: number, perSecond: number }
  /** how far a bind's timestamp may be from the relay's clock (default 30 s) */
  maxSkewMs?: number
  log?: RelayLogger
}

/** RelaySide is one node of an allocated pair. */
export interface RelaySide {
  /** the node's WireGuard public key: only it may bind this side */
  nodeKey: string
  /** the allocated relay port for this side (WireGuard's endpoint for the other node) */
  port: number
  /** where this side's last accepted bind came from */
  bound?: { address: string, port: number }
  /** the nonce of that bind: an ack sent later (the other side bound) answers it */
  bindNonce?: Uint8Array
}

/** Allocation is a relayed pair: two ports, two nodes, until `expiresAt` (ms since the epoch). */
export interface Allocation {
  id: string
  sides: [RelaySide, RelaySide]
  expiresAt: number
}

/** AllocationRequest asks for a pair between two nodes' WireGuard keys. */
export interface AllocationRequest {
  nodeKeys: [string, string]
  expiresAt: number
}

/** RelayStats counts what the relay did; `dataPackets` must stay 0 (the kernel forwards data). */
export interface RelayStats {
  allocations: number
  binds: number
  acks: number
  stun: number
  /** `family`: a bind over the other IP family than the pair's other side is bound by (nft cannot forward between them) */
  refused: Record<'malformed' | 'unsealed' | 'wrong_side' | 'stale' | 'replay' | 'rate' | 'expired' | 'family', number>
  dataPackets: number
}

/**
 * UdpRelay is the kernel relay: a control port that answers STUN, and for each allocated
 * pair two UDP ports whose binds teach it where each node's WireGuard port is mapped. Once
 * both sides are bound the kernel forwards the pair's packets both ways (relay-nft.ts);
 * the process only handles binds. Who may have an allocation is the caller's decision
 * (the controller's relay broker); the relay checks that each bind is sealed by the
 * side's node key, fresh, not replayed and within that node's rate.
 */
export interface UdpRelay {
  readonly publicKey: string
  /** the control port as bound */
  readonly port: number
  /** host:port of the control port for nodes (RelayInfo.udp) */
  readonly endpoint: string
  /** [v6]:port of the control port of a dual-stack relay (RelayInfo.udp6) */
  readonly endpoint6?: string
  /**
   * endpointOf is host:port of an allocated port, for a grant: over IPv6 (publicHost6)
   * when `family` is 6 and the relay has one, else publicHost
   */
  endpointOf: (port: number, family?: IpFamily) => string
  allocate: (req: AllocationRequest) => Promise<Allocation>
  /** renew moves an allocation's expiry; false when it is gone */
  renew: (id: string, expiresAt: number) => boolean
  /** release removes an allocation at once: its forwards, ports and sockets */
  release: (id: string) => Promise<void>
  allocation: (id: string) => Allocation | undefined
  allocations: () => Allocation[]
  stats: () => RelayStats
  /** onBound is called after a side's bind took effect (forwards installed when both are bound) */
  onBound: (handler: (a: Allocation, side: number) => void) => () => void
  /** close releases everything, deletes the table and restores kernel settings */
  close: () => Promise<void>
}

const DEFAULT_RANGE: PortRange = { first: 40000, last: 40999 }

interface Live {
  a: Allocation
  sockets: [Socket, Socket]
}

async function bindUdp (host: string, port: number): Promise<Socket> {
  const s = createSocket({ type: isIP(host) === 6 ? 'udp6' : 'udp4' })
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject)
    s.bind(port, host, () => { s.off('error', reject); resolve() })
  })
  return s
}

async function closeUdp (s: Socket): Promise<void> {
  await new Promise<void>(resolve => { try { s.close(() => resolve()) } catch { resolve() } })
}

/** unmapped strips the IPv4-mapped prefix a dual-stack socket may report. */
const unmapped = (a: string): string => a.startsWith('::ffff:') ? a.slice(7) : a

/** sendTo sends from a socket to an address of either family: an IPv6 socket reaches IPv4 at its mapped address. */
function sendTo (s: Socket, msg: Uint8Array, to: { address: string, port: number }): void {
  const v4onV6 = isIP(to.address) === 4 && s.address().family === 'IPv6'
  s.send(msg, to.port, v4onV6 ? `::ffff:${to.address}` : to.address)
}

/**
 * startUdpRelay sets the kernel up (sysctls, the relay's nftables table), binds the
 * control port and returns the running relay.
 */
export async function startUdpRelay (opts: UdpRelayOptions): Promise<UdpRelay> {
  const publicHost6 = opts.publicHost6
  if (publicHost6 !== undefined && isIP(publicHost6) !== 6) {
    throw Object.assign(new Error(`relay IPv6 public host '${publicHost6}' must be an IPv6 address (the IPv4 one or a name goes in the public host)`), { code: 'invalid_input' })
  }
  const host = opts.listenHost ?? (isIP(opts.publicHost ?? '') === 6 || publicHost6 !== undefined ? '::' : '0.0.0.0')
  if (publicHost6 !== undefined && host !== '::') {
    throw Object.assign(new Error(`a dual-stack relay (IPv6 public host ${publicHost6}) must listen on '::', not '${host}'`), { code: 'invalid_input' })
  }
  const publicHost = opts.publicHost ?? host
  const range = opts.portRange ?? DEFAULT_RANGE
  if (!(range.first >= 1 && range.last <= 65535 && range.first + 1 <= range.last)) {
    throw Object.assign(new Error(`relay port range ${range.first}-${range.last} must hold two or more ports between 1 and 65535`), { code: 'bad_port_range' })
  }
  const firewall = opts.firewall ?? createRelayFirewall()
  const log = opts.log
  const replay = createReplayWindow(opts.maxSkewMs ?? 30_000)
  const rate = createTokenBuckets(opts.bindRate?.burst ?? 10, opts.bindRate?.perSecond ?? 2)
  const queue = createSerialQueue()
  const live = new Map<string, Live>()
  const byPort = new Map<number, { l: Live, side: number }>()
  const boundHandlers = new Set<(a: Allocation, side: number) => void>()
  const stats: RelayStats = {
    allocations: 0, binds: 0, acks: 0, stun: 0, dataPackets: 0,
    refused: { malformed: 0, unsealed: 0, wrong_side: 0, stale: 0, replay: 0, rate: 0, expired: 0, family: 0 }
  }

  let restoreSysctls: SysctlRestore = async () => {}
  if (opts.sysctls !== false) {
    const s = opts.sysctls ?? procSysctls
    restoreSysctls = await applySysctls(s, await relaySysctlPlan(s, { ipv6: isIP(host) === 6 }))
  }
  let control: Socket
  try {
    await firewall.up()
    control = await bindUdp(host, opts.port)
  } catch (e) {
    await firewall.down().catch(() => {})
    await restoreSysctls()
    throw e
  }
  const port = control.address().port
  control.on('message', (msg, from) => {
    const req = parseStunBindingRequest(msg)
    if (req === undefined) return
    stats.stun++
    control.send(encodeStunBindingResponse(req.txid, { address: unmapped(from.address), port: from.port }), from.port, from.address)
  })
  const sweeper = setInterval(() => {
    const now = Date.now()
    rate.sweep(now)
    for (const l of live.values()) if (l.a.expiresAt <= now) void release(l.a.id).catch(() => {})
  }, 1000)
  sweeper.unref()

  const forwardsOf = (a: Allocation): Forward[] => {
    const [x, y] = a.sides
    if (x.bound === undefined || y.bound === undefined) return []
    return [{ port: x.port, outPort: y.port, to: y.bound }, { port: y.port, outPort: x.port, to: x.bound }]
  }
  const sameForward = (f: Forward, g: Forward | undefined): boolean =>
    g !== undefined && g.outPort === f.outPort && g.to.address === f.to.address && g.to.port === f.to.port

  function refuse (why: keyof RelayStats['refused'], l: Live, side: number, from: RemoteInfo): void {
    stats.refused[why]++
    log?.debug({ allocation: l.a.id, side, from: formatHostPort(from.address, from.port), why }, 'relay bind refused')
  }

  /** onBindPacket checks one packet on an allocated port and, for a good bind, installs and acks. */
  function onPortPacket (l: Live, side: number, msg: Buffer, from: RemoteInfo): void {
    const c = decodeControl(msg)
    if (c === undefined) {
      // The nftables rules drop every non-control packet before it gets here.
      stats.dataPackets++
      return
    }
    if (c.kind !== ControlKind.RelayBind) return refuse('malformed', l, side, from)
    const me = l.a.sides[side]!
    // Per side, checked before any crypto: a node's binds cost the relay at most this per allocation.
    if (!rate.take(`${l.a.id}/${side}`)) return refuse('rate', l, side, from)
    const b = openRelayBind(msg, opts.key.privateKey)
    if (b === undefined) return refuse('unsealed', l, side, from)
    if (b.allocation !== l.a.id || b.nodeKey !== me.nodeKey) return refuse('wrong_side', l, side, from)
    if (l.a.expiresAt <= Date.now()) return refuse('expired', l, side, from)
    const verdict = replay.check(b.nonce, b.timestampMs)
    if (verdict !== 'ok') return refuse(verdict, l, side, from)
    const address = unmapped(from.address)
    const otherBound = l.a.sides[1 - side]!.bound
    if (otherBound !== undefined && isIP(otherBound.address) !== isIP(address)) return refuse('family', l, side, from)
    stats.binds++
    void queue.run(async () => {
      if (live.get(l.a.id) !== l) return
      const other = l.a.sides[1 - side]!
      const completes = me.bound === undefined && other.bound !== undefined
      me.bound = { address, port: from.port }
      me.bindNonce = b.nonce
      const want = forwardsOf(l.a).filter(f => !sameForward(f, firewall.forward(f.port)))
      if (want.length > 0) await firewall.apply({ setForwards: want })
      sendAck(l, side, other.bound !== undefined)
      // The other side learns now, not at its next rebind, that the pair forwards.
      if (completes) sendAck(l, 1 - side, true)
      for (const h of boundHandlers) h(l.a, side)
    }).catch(err => log?.warn({ err: (err as Error).message, allocation: l.a.id }, 'relay could not install a bound pair'))
  }

  /** sendAck answers a side's last bind; `peerBound` says whether the pair forwards. */
  function sendAck (l: Live, side: number, peerBound: boolean): void {
    const s = l.a.sides[side]!
    if (s.bound === undefined || s.bindNonce === undefined) return
    const ack = encodeRelayBindAck({ allocation: l.a.id, bindNonce: s.bindNonce, observed: s.bound, peerBound, relayPrivateKey: opts.key.privateKey, nodePublicKey: s.nodeKey })
    // A dual-stack socket (bound to ::) cannot send to an IPv4 address as such: no ack would leave.
    sendTo(l.sockets[side]!, ack, s.bound)
    stats.acks++
  }

  async function openPorts (): Promise<[Socket, Socket]> {
    const got: Socket[] = []
    const span = range.last - range.first + 1
    for (let tries = 0; got.length < 2 && tries < span; tries++) {
      const p = range.first + Math.floor(Math.random() * span)
      if (byPort.has(p) || got.some(s => s.address().port === p)) continue
      try { got.push(await bindUdp(host, p)) } catch { /* in use: try another */ }
    }
    if (got.length < 2) {
      for (const s of got) await closeUdp(s)
      throw Object.assign(new Error(`relay has no free ports left in ${range.first}-${range.last}; widen --relay-ports`), { code: 'relay_full' })
    }
    return [got[0]!, got[1]!]
  }

  async function release (id: string): Promise<void> {
    await queue.run(async () => {
      const l = live.get(id)
      if (l === undefined) return
      live.delete(id)
      for (const s of l.a.sides) byPort.delete(s.port)
      try {
        await firewall.apply({ removePorts: l.a.sides.map(s => s.port) })
      } finally {
        for (const s of l.sockets) await closeUdp(s)
        stats.allocations = live.size
      }
      log?.info({ allocation: id }, 'relay allocation released')
    })
  }

  let closed = false
  return {
    publicKey: opts.key.publicKey,
    port,
    endpoint: formatHostPort(publicHost, port),
    ...(publicHost6 !== undefined ? { endpoint6: formatHostPort(publicHost6, port) } : {}),
    endpointOf: (p, family) => formatHostPort(family === 6 && publicHost6 !== undefined ? publicHost6 : publicHost, p),
    async allocate (req) {
      if (closed) throw Object.assign(new Error('the relay is stopped'), { code: 'relay_stopped' })
      for (const k of req.nodeKeys) if (!isWireGuardKey(k)) throw Object.assign(new Error('relay allocation: node keys must be WireGuard keys'), { code: 'invalid_input' })
      return await queue.run(async () => {
        const sockets = await openPorts()
        const id = newAllocationId()
        const a: Allocation = {
          id,
          expiresAt: req.expiresAt,
          sides: [{ nodeKey: req.nodeKeys[0], port: sockets[0].address().port }, { nodeKey: req.nodeKeys[1], port: sockets[1].address().port }]
        }
        const l: Live = { a, sockets }
        try {
          await firewall.apply({ addPorts: a.sides.map(s => s.port) })
        } catch (e) {
          for (const s of sockets) await closeUdp(s)
          throw e
        }
        live.set(id, l)
        sockets.forEach((s, side) => {
          byPort.set(a.sides[side]!.port, { l, side })
          s.on('message', (msg, from) => onPortPacket(l, side, msg, from))
        })
        stats.allocations = live.size
        log?.info({ allocation: id, ports: a.sides.map(s => s.port) }, 'relay allocation made')
        return a
      })
    },
    renew (id, expiresAt) {
      if (!isAllocationId(id)) return false
      const l = live.get(id)
      if (l === undefined) return false
      l.a.expiresAt = expiresAt
      return true
    },
    release,
    allocation: id => live.get(id)?.a,
    allocations: () => [...live.values()].map(l => l.a),
    stats: () => ({ ...stats, refused: { ...stats.refused } }),
    onBound (h) {
      boundHandlers.add(h)
      return () => { boundHandlers.delete(h) }
    },
    async close () {
      if (closed) return
      closed = true
      clearInterval(sweeper)
      for (const id of [...live.keys()]) await release(id).catch(() => {})
      await closeUdp(control)
      await queue.run(async () => { await firewall.down() }).catch(err => log?.warn({ err: (err as Error).message }, 'relay could not delete its nftables table'))
      await restoreSysctls()
    }
  }
}

/**
 * relayUnsupportedReason says why this process cannot run the kernel relay (not root, no
 * nft), or undefined when it can.
 */
export async function relayUnsupportedReason (): Promise<string | undefined> {
  if (process.platform !== 'linux') return 'the kernel relay needs Linux (nftables)'
  if (process.getuid?.() !== 0) return 'the kernel relay needs root (it programs nftables and sets sysctls)'
  try {
    await runCommand(['nft', '--version'])
  } catch (e) {
    return `the kernel relay needs nft (install nftables): ${(e as Error).message}`
  }
  return undefined
}
