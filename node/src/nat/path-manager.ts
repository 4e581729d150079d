import ipaddr from 'ipaddr.js'
import { formatHostPort, parseHostPort } from '@warren/protocol'
import type { DiscoPong } from './disco.js'
import type { PeerPath, TlsRelayClient, UdpAddress, UdpRelayClient } from './types.js'

/**
 * PathTimings are the path manager's clocks, in ms. The defaults meet the issue's
 * rule: a direct path that stops answering is left for a relay within 6 s (a heartbeat
 * every 2 s, trust lost 5 s after the last pong).
 */
export interface PathTimings {
  /** heartbeat pings the direct path in use this often */
  heartbeatMs: number
  /** trustMs: a direct path stays in use this long after its last pong */
  trustMs: number
  /** full pings start this long after both sides could know each other's candidates */
  punchDelayMs: number
  /** one discovery burst sends probes this often ... */
  burstStepMs: number
  /** ... for this long */
  burstMs: number
  /**
   * retryMs: a burst that found no direct path is retried this long after it ended, and
   * the wait doubles with each burst in a row that finds none, up to retryMaxMs. Longer
   * than Linux's 30 s timeout for unreplied UDP conntrack entries plus a burst: a full
   * probe that reached the peer's NAT before the peer had probed out (a burst the peer
   * never heard of) leaves such an entry, which spoils the peer's mapping toward us until
   * it has gone.
   */
  retryMs: number
  /**
   * retryMaxMs caps the retry wait, so a pair that can never go direct (symmetric NATs,
   * UDP blocked between them) costs a burst and a call through the controller per peer
   * this often instead of every retryMs. Whatever either node can see change (new
   * candidates on either side, the peer coming back, a direct path lost) starts a burst
   * at once and the waits from retryMs again.
   */
  retryMaxMs: number
  /** a ping without a pong is forgotten after this */
  pingTimeoutMs: number
  /**
   * udpRelayIdleMs: a peer's kernel-relay allocation is released once its direct path has
   * held this long, so relay ports are not kept forever for peers that talk directly. It
   * is requested again as soon as a heartbeat goes unanswered (before the direct path is
   * given up), when the direct path is lost, and whenever no direct path is found. A
   * request costs a round trip to the controller (which allocates two relay ports), the
   * grant to both nodes and a bind round trip to the relay from each: well under a second
   * on a healthy network, and the connected TLS relay carries the peer in the meantime.
   */
  udpRelayIdleMs: number
}

/** DEFAULT_PATH_TIMINGS are the timings a daemon uses. */
export const DEFAULT_PATH_TIMINGS: Readonly<PathTimings> = {
  heartbeatMs: 2000,
  trustMs: 5000,
  punchDelayMs: 1000,
  burstStepMs: 1000,
  burstMs: 5000,
  retryMs: 40_000,
  retryMaxMs: 300_000,
  pingTimeoutMs: 5000,
  udpRelayIdleMs: 300_000
}

/** PUNCH_TTL passes our own NAT and dies before the peer's (see ARCHITECTURE.md, NAT facts). */
export const PUNCH_TTL = 2
/** MAX_LEARNED_CANDIDATES bounds the candidates a peer's pings may add. */
const MAX_LEARNED_CANDIDATES = 8

/** ProbeSender is the part of Disco the path manager uses. */
export interface ProbeSender {
  /** ping sends one probe; returns its transaction id (hex) */
  ping: (peerKey: string, to: UdpAddress, opts?: { ttl?: number }) => string
}

/**
 * RelayIdentity is an optional extra of a relay client: which relay carries a peer, for
 * `warren status`. A client without it leaves the relay id out.
 */
export interface RelayIdentity {
  relayId?: (peerWgKey: string) => string | undefined
}

/** PathPeer is what the path manager needs of a netmap peer. */
export interface PathPeer {
  wgKey: string
  /** host:port candidates from the map: the peer's interface addresses and STUN-mapped ones */
  endpoints: string[]
  /** online as the controller says; an offline peer is not probed (default true) */
  online?: boolean
}

/** PathManagerInit wires a path manager to its clock, its probes and the optional relays. */
export interface PathManagerInit {
  probes: ProbeSender
  /** a clock in ms; unit tests pass a fake and call tick() */
  now: () => number
  udpRelay?: UdpRelayClient & RelayIdentity
  tlsRelay?: TlsRelayClient & RelayIdentity
  timings?: Partial<PathTimings>
  punchTtl?: number
  /**
   * callMeMaybe tells the peer (through the controller) that we start a burst toward it
   * now, so that it starts its own at once (see handleCallMeMaybe). Both nodes' TTL-limited
   * probes then open their NATs within a control round trip of each other, well inside
   * punchDelayMs, before either side's full probes, whatever their clocks say. This
   * replaces retries at wall-clock instants, which needed the two clocks to agree within
   * about a second. Nothing needs a shared clock instead: two bursts that started together
   * end together, so both nodes' retry waits (on their monotonic clocks) also run out
   * together, and the first node to get there calls the other in again; when the
   * controller cannot pass a call on, the peer's own retry comes about then anyway.
   */
  callMeMaybe?: (peerKey: string) => void
  /**
   * settled says whether our own candidates are known (STUN has answered, or there is no
   * STUN server): until then only TTL-limited probes go out. A full probe that reaches the
   * peer's NAT before the peer can have probed toward our mapped address leaves an
   * unreplied conntrack entry there that spoils the peer's mapping for 30 s. Default: always.
   */
  settled?: () => boolean
  /** onError hears about a relay that failed to give an endpoint */
  onError?: (peerKey: string, e: Error) => void
}

/**
 * PathManager chooses one path per peer: direct when a probe pair succeeded recently,
 * else the kernel UDP relay, else the TLS relay, else none (WireGuard keeps the map's
 * first endpoint). It is a state machine over an injected clock: events (setPeers,
 * handlePing, handlePong, relay changes) update state, tick() sends what is due.
 */
export interface PathManager {
  /** setPeers replaces the peers and their candidates */
  setPeers: (peers: PathPeer[]) => void
  /**
   * setSelfEndpoints tells the candidates we last reported to the controller: when they
   * change, peers learn them only now, so full pings wait again (see PathTimings.punchDelayMs)
   */
  setSelfEndpoints: (endpoints: string[]) => void
  /**
   * handleCallMeMaybe: the peer has just started a burst toward us; start ours now (or
   * keep the running one going as long as the peer's), without calling back
   */
  handleCallMeMaybe: (peerKey: string) => void
  /** handlePing: a peer pinged us from `from` (already answered): a candidate that works */
  handlePing: (peerKey: string, from: UdpAddress) => void
  handlePong: (pong: DiscoPong) => void
  /** tick sends the probes that are due and returns the ms until it wants to run again */
  tick: () => number
  path: (peerKey: string) => PeerPath | undefined
  /** endpoints is the WireGuard endpoint per peer that has a path */
  endpoints: () => Map<string, string>
  /** onChange fires after any peer's path changed */
  onChange: (handler: () => void) => () => void
  close: () => void
}

interface Candidate {
  endpoint: string
  addr: UdpAddress
  private: boolean
  /** learned from the peer's ping rather than the map */
  learned: boolean
  lastPongAt?: number
  latencyMs?: number
}

interface Burst {
  nextStepAt: number
  fullAt: number
  endAt: number
}

interface PeerState {
  key: string
  mapEndpoints: string
  candidates: Map<string, Candidate>
  pending: Map<string, { endpoint: string, sentAt: number }>
  /** when the peer's candidates, or ours, last changed */
  readyAt: number
  burst?: Burst
  nextBurstAt: number
  /** bursts in a row that found no direct path (the retry wait grows with them) */
  failures: number
  online: boolean
  /** full pings right away (candidates learned from the peer's pings) */
  urgent: Set<string>
  nextHeartbeatAt: number
  path?: PeerPath
  /** when the path last became direct, or last wavered (a heartbeat unanswered) */
  directSince: number
  /** the UDP relay allocation was released (the direct path held for udpRelayIdleMs) */
  udpReleased: boolean
  tls?: string
  tlsWanted: boolean
  /** tick() visits the peer at this time (-Infinity: at the next tick) */
  dueAt: number
}

/** createPathManager returns the pure path state machine; createPathService runs it with real timers. */
export function createPathManager (init: PathManagerInit): PathManager {
  const T: PathTimings = { ...DEFAULT_PATH_TIMINGS, ...init.timings }
  const ttl = init.punchTtl ?? PUNCH_TTL
  const { now, probes, udpRelay, tlsRelay } = init
  const peers = new Map<string, PeerState>()
  const handlers = new Set<() => void>()
  let selfEndpoints = ''
  const settled = init.settled ?? (() => true)
  let closed = false

  function candidate (endpoint: string, learned: boolean): Candidate | undefined {
    let hp: { host: string, port: number }
    try { hp = parseHostPort(endpoint, 'endpoint') } catch { return undefined }
    if (!ipaddr.isValid(hp.host) || hp.port === 0) return undefined
    const ip = ipaddr.process(hp.host)
    const range = ip.range()
    return { endpoint, addr: { address: ip.toString(), port: hp.port }, learned, private: range === 'private' || range === 'uniqueLocal' }
  }

  function newPeer (key: string): PeerState {
    return {
      key, mapEndpoints: '', candidates: new Map(), pending: new Map(), readyAt: now(), nextBurstAt: now(), failures: 0,
      online: true,
      urgent: new Set(), nextHeartbeatAt: 0, directSince: 0, udpReleased: false, tlsWanted: false, dueAt: -Infinity
    }
  }

  /** rediscover starts a burst now, with short retry waits again: candidates changed, or the direct path was lost. */
  function rediscover (p: PeerState): void {
    p.burst = undefined
    p.nextBurstAt = now()
    p.failures = 0
    p.dueAt = -Infinity
  }

  /** startBurst starts a burst; one we start ourselves calls the peer in, one that answers its call does not. */
  function startBurst (p: PeerState, t: number, answering: boolean): Burst {
    const b: Burst = { nextStepAt: t, fullAt: Math.max(t, p.readyAt) + T.punchDelayMs, endAt: t + T.burstMs }
    p.burst = b
    p.dueAt = -Infinity
    // A direct path's bursts only look for a better candidate; the peer answers them already.
    if (!answering && p.path?.kind !== 'direct') init.callMeMaybe?.(p.key)
    return b
  }

  /** retryWait is how long after a burst the next one starts: retryMs, doubled per burst in a row that found nothing. */
  function retryWait (failures: number): number {
    return Math.min(T.retryMaxMs, T.retryMs * 2 ** Math.max(0, Math.min(failures - 1, 30)))
  }

  /** wantUdpRelay asks for the peer's UDP relay allocation again if it was released. */
  function wantUdpRelay (p: PeerState): void {
    udpRelay?.request(p.key)
    p.udpReleased = false
  }

  function best (p: PeerState): Candidate | undefined {
    const t = now()
    const live = [...p.candidates.values()].filter(c => c.lastPongAt !== undefined && t - c.lastPongAt <= T.trustMs)
    if (live.length === 0) return undefined
    // LAN addresses first (two nodes behind one NAT stay on the LAN), then the fastest.
    live.sort((a, b) => Number(b.private) - Number(a.private) || (a.latencyMs ?? 0) - (b.latencyMs ?? 0))
    const top = live[0]!
    const cur = p.path?.kind === 'direct' ? live.find(c => c.endpoint === p.path!.endpoint) : undefined
    // Stay on a working path unless the new one is clearly better: flapping endpoints cost packets.
    if (cur !== undefined && cur.private === top.private && (cur.latencyMs ?? 0) <= 2 * (top.latencyMs ?? 0) + 5) return cur
    return top
  }

  function relayPath (p: PeerState): PeerPath | undefined {
    // Asked for first: a released allocation the peer still holds is still there to use.
    wantUdpRelay(p)
    const udp = udpRelay?.endpoint(p.key)
    if (udp !== undefined) return withRelay({ kind: 'udp-relay', endpoint: udp }, udpRelay?.relayId?.(p.key))
    if (tlsRelay === undefined) return undefined
    // A loopback endpoint carries nothing while the TLS connection is down: leave the peer
    // on the map's endpoint then, and come back when it is up (onStateChange). The
    // endpoint stays open, so the relay hears of the peer as soon as it reconnects.
    if (p.tls !== undefined) return tlsRelay.connected(p.key) ? withRelay({ kind: 'tls-relay', endpoint: p.tls }, tlsRelay.relayId?.(p.key)) : undefined
    if (!p.tlsWanted) {
      p.tlsWanted = true
      tlsRelay.endpoint(p.key).then(ep => {
        if (!p.tlsWanted || peers.get(p.key) !== p) return
        p.tls = ep
        update(p)
      }, (e: unknown) => {
        p.tlsWanted = false
        init.onError?.(p.key, e instanceof Error ? e : new Error(String(e)))
      })
    }
    return undefined
  }

  function withRelay (path: PeerPath, relay: string | undefined): PeerPath {
    return relay !== undefined ? { ...path, relay } : path
  }

  /** update recomputes a peer's path and tells the handlers when it changed. */
  function update (p: PeerState): void {
    if (closed) return
    // Whatever changed may make work due sooner; a peer visited early does nothing extra.
    p.dueAt = -Infinity
    const direct = best(p)
    const next = direct !== undefined
      ? { kind: 'direct' as const, endpoint: direct.endpoint, ...(direct.latencyMs !== undefined ? { latencyMs: direct.latencyMs } : {}) }
      : relayPath(p)
    const prev = p.path
    if (prev?.kind === 'direct' && next?.kind !== 'direct') rediscover(p)
    if (next?.kind !== 'tls-relay' && p.tls !== undefined && next !== undefined) {
      tlsRelay?.release(p.key)
      p.tls = undefined
      p.tlsWanted = false
    }
    if (next?.kind === 'direct' && prev?.kind !== 'direct') {
      p.nextHeartbeatAt = now() + T.heartbeatMs
      p.directSince = now()
      p.failures = 0
    }
    if (next === undefined) delete p.path
    else p.path = next
    const changed = prev?.kind !== next?.kind || prev?.endpoint !== next?.endpoint || prev?.relay !== next?.relay
    if (changed) for (const h of handlers) h()
  }

  function send (p: PeerState, c: Candidate, full: boolean): void {
    const txid = probes.ping(p.key, c.addr, full ? undefined : { ttl })
    if (full) p.pending.set(txid, { endpoint: c.endpoint, sentAt: now() })
  }

  function stepBurst (p: PeerState, t: number): void {
    let b = p.burst
    if (b === undefined) {
      if (t < p.nextBurstAt || p.candidates.size === 0 || !p.online) return
      b = startBurst(p, t, false)
    }
    if (t >= b.endAt) {
      p.burst = undefined
      if (p.path?.kind !== 'direct') p.failures++
      p.nextBurstAt = t + retryWait(p.failures)
      return
    }
    if (t < b.nextStepAt) return
    // TTL-limited probes first open our own NAT toward each candidate; the full pings
    // that follow then meet an open mapping on both NATs, not an unreplied entry.
    for (const c of p.candidates.values()) send(p, c, false)
    if (t >= b.fullAt && settled()) for (const c of p.candidates.values()) send(p, c, true)
    b.nextStepAt = t + T.burstStepMs
  }

  function tickPeer (p: PeerState, t: number): number {
    for (const [txid, ping] of p.pending) if (t - ping.sentAt > T.pingTimeoutMs) p.pending.delete(txid)
    for (const ep of p.urgent) {
      const c = p.candidates.get(ep)
      if (c !== undefined) send(p, c, true)
    }
    p.urgent.clear()
    update(p)
    stepBurst(p, t)
    if (p.path?.kind === 'direct' && t >= p.nextHeartbeatAt) {
      const c = p.candidates.get(p.path.endpoint)
      if (c !== undefined) send(p, c, true)
      p.nextHeartbeatAt = t + T.heartbeatMs
    }
    const waverAt = waveringAt(p)
    if (p.path?.kind === 'direct' && t >= waverAt) {
      // A heartbeat went unanswered: get the UDP relay back before the direct path is
      // given up (trustMs), and count the stable time again.
      p.directSince = t
      if (p.udpReleased) wantUdpRelay(p)
    } else if (p.path?.kind === 'direct' && !p.udpReleased && udpRelay !== undefined && t - p.directSince >= T.udpRelayIdleMs) {
      p.udpReleased = true
      udpRelay.release(p.key)
    }
    const due: number[] = []
    if (p.candidates.size > 0 && (p.online || p.burst !== undefined)) due.push(p.burst?.nextStepAt ?? p.nextBurstAt)
    if (p.burst !== undefined) due.push(p.burst.endAt)
    if (p.path?.kind === 'direct') {
      due.push(p.nextHeartbeatAt)
      const c = p.candidates.get(p.path.endpoint)
      if (c?.lastPongAt !== undefined) due.push(c.lastPongAt + T.trustMs + 1)
      const w = waveringAt(p)
      if (w > t) due.push(w)
      if (!p.udpReleased && udpRelay !== undefined) due.push(p.directSince + T.udpRelayIdleMs)
    }
    return due.length === 0 ? Infinity : Math.min(...due)
  }

  /**
   * waveringAt is when the direct path in use counts as wavering: one and a half
   * heartbeats after its last pong, when the heartbeat sent since has had ample time to be
   * answered; still well before trustMs gives the path up (Infinity when not direct).
   */
  function waveringAt (p: PeerState): number {
    if (p.path?.kind !== 'direct') return Infinity
    const last = p.candidates.get(p.path.endpoint)?.lastPongAt
    return last === undefined ? Infinity : Math.max(last, p.directSince) + T.heartbeatMs * 3 / 2
  }

  const offRelay = udpRelay?.onChange(key => {
    const p = peers.get(key)
    if (p !== undefined) update(p)
  })
  const offTls = tlsRelay?.onStateChange(() => {
    for (const p of peers.values()) if (p.tls !== undefined) update(p)
  })
  // A pair moved to another TLS relay: its old endpoint is gone; ask for the new one.
  const offMoved = tlsRelay?.onMoved?.(key => {
    const p = peers.get(key)
    if (p === undefined || (p.tls === undefined && !p.tlsWanted)) return
    p.tls = undefined
    p.tlsWanted = false
    update(p)
  })

  return {
    setSelfEndpoints (list) {
      const key = [...list].sort().join(',')
      if (key === selfEndpoints) return
      selfEndpoints = key
      for (const p of peers.values()) {
        p.readyAt = now()
        rediscover(p)
      }
    },
    setPeers (list) {
      const t = now()
      const want = new Map(list.map(p => [p.wgKey, p]))
      for (const [key, p] of peers) {
        if (want.has(key)) continue
        peers.delete(key)
        if (p.tls !== undefined || p.tlsWanted) tlsRelay?.release(key)
        if (!p.udpReleased) udpRelay?.release(key)
      }
      for (const pp of want.values()) {
        let p = peers.get(pp.wgKey)
        if (p === undefined) {
          p = newPeer(pp.wgKey)
          peers.set(pp.wgKey, p)
        }
        const mapKey = [...pp.endpoints].sort().join(',')
        const online = pp.online !== false
        if (online && !p.online) rediscover(p)
        p.online = online
        if (mapKey !== p.mapEndpoints) {
          p.mapEndpoints = mapKey
          const keep = new Map<string, Candidate>()
          for (const ep of pp.endpoints) {
            const c = p.candidates.get(ep) ?? candidate(ep, false)
            if (c !== undefined) keep.set(ep, { ...c, learned: false })
          }
          for (const c of p.candidates.values()) if (c.learned && !keep.has(c.endpoint)) keep.set(c.endpoint, c)
          p.candidates = keep
          p.readyAt = t
          rediscover(p)
        }
        update(p)
      }
    },
    handleCallMeMaybe (peerKey) {
      const p = peers.get(peerKey)
      if (p === undefined || closed || p.candidates.size === 0) return
      const t = now()
      // The call says the peer is up, whatever the map last said of it.
      if (p.burst === undefined) startBurst(p, t, true)
      else p.burst.endAt = Math.max(p.burst.endAt, t + T.burstMs)
      p.dueAt = -Infinity
    },
    handlePing (peerKey, from) {
      const p = peers.get(peerKey)
      if (p === undefined) return
      const endpoint = formatHostPort(from.address, from.port)
      if (p.candidates.has(endpoint)) return
      const c = candidate(endpoint, true)
      if (c === undefined) return
      const learned = [...p.candidates.values()].filter(x => x.learned)
      if (learned.length >= MAX_LEARNED_CANDIDATES) p.candidates.delete(learned[0]!.endpoint)
      p.candidates.set(endpoint, c)
      p.urgent.add(endpoint)
      p.dueAt = -Infinity
    },
    handlePong (pong) {
      const p = peers.get(pong.peerKey)
      const ping = p?.pending.get(pong.txid)
      if (p === undefined || ping === undefined) return
      p.pending.delete(pong.txid)
      const c = p.candidates.get(ping.endpoint)
      // tick() may not have visited the peer since the ping timed out
      if (c === undefined || now() - ping.sentAt > T.pingTimeoutMs) return
      c.lastPongAt = now()
      c.latencyMs = Math.max(0, now() - ping.sentAt)
      update(p)
    },
    tick () {
      if (closed) return Infinity
      const t = now()
      let next = Infinity
      // Only peers with something due: a scan of due times, not of each peer's state.
      for (const p of peers.values()) {
        if (p.dueAt <= t) p.dueAt = tickPeer(p, t)
        next = Math.min(next, p.dueAt)
      }
      return Math.max(0, next - t)
    },
    path: key => peers.get(key)?.path,
    endpoints () {
      const out = new Map<string, string>()
      for (const [key, p] of peers) if (p.path !== undefined) out.set(key, p.path.endpoint)
      return out
    },
    onChange (h) { handlers.add(h); return () => handlers.delete(h) },
    close () {
      closed = true
      offRelay?.()
      offTls?.()
      offMoved?.()
      for (const p of peers.values()) if (p.tls !== undefined || p.tlsWanted) tlsRelay?.release(p.key)
      peers.clear()
      handlers.clear()
    }
  }
}
