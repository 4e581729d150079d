import {
  encodeRelayBind, openRelayBindAck, decodeControl, ControlKind, parseHostPort, formatHostPort, wireGuardPublicKey, toBase64,
  type RelayGrant, type RelayRevoke, type RelayRequest, type RelayRelease
} from '@warren/protocol'
import type { SharedPort, SharedPortPacket, UdpAddress, UdpRelayClient } from './types.js'
import type { MapSession } from '../control/map-session.js'
import { relayAddresses, type HostResolver } from './relay-address.js'

/**
 * RelayControl is the client's line to the controller: relay requests out, grants and
 * revocations in. The map session carries it (mapSessionRelayControl).
 */
export interface RelayControl {
  /** send sends a request or a release; false when the controller is not reachable now */
  send: (msg: RelayRequest | RelayRelease) => boolean
  onMessage: (handler: (msg: RelayGrant | RelayRevoke) => void) => () => void
  /** onConnected fires after each (re)connection, so unanswered requests go out again */
  onConnected: (handler: () => void) => () => void
}

/** mapSessionRelayControl carries relay requests and grants over a map session. */
export function mapSessionRelayControl (session: MapSession): RelayControl {
  return {
    send: msg => session.sendRelayRequest(msg),
    onMessage (h) {
      session.on('relay', h)
      return () => { session.off('relay', h) }
    },
    onConnected (h) {
      const on = (s: string): void => { if (s === 'connected') h() }
      session.on('state', on)
      return () => { session.off('state', on) }
    }
  }
}

export interface UdpRelayClientLogger {
  info: (obj: object, msg?: string) => void
  debug: (obj: object, msg?: string) => void
}

export interface UdpRelayClientInit {
  control: RelayControl
  /** binds leave from the WireGuard port through it, and acks come back through it */
  sharedPort: SharedPort
  /** the node's WireGuard private key (binds are sealed with it) */
  wgPrivateKey: string
  /** rebind this often once bound, to keep NAT mappings and the relay's view fresh (default 20 s) */
  refreshMs?: number
  /** first retry of an unanswered bind (default 250 ms; doubles up to 5 s) */
  retryMs?: number
  /** retry of a request the controller could not take or refused for now (default 5 s) */
  requestRetryMs?: number
  /** resolves a relay given by host name, both families (default: the system resolver) */
  resolve?: HostResolver
  log?: UdpRelayClientLogger
}

/** RelayPeerState is what the client knows about one peer's allocation. */
interface PeerState {
  peer: string
  /** asked for here (renewed here); grants the peer asked for are bound too, but not renewed */
  wanted: boolean
  /** released after being wanted: the controller frees the allocation once the peer does not hold it either */
  released: boolean
  /** the release is still to be sent (the controller was not reachable) */
  releasePending: boolean
  grant?: RelayGrant
  to?: UdpAddress
  /** the relay's addresses, in the order tried (IPv4 first); `to` moves on when the relay does not answer */
  addresses: string[]
  bound: boolean
  /** the relay said the peer's side is bound too (the pair forwards) */
  peerBound: boolean
  /** nonces of binds sent for this grant and not yet acknowledged (a few) */
  nonces: string[]
  /** the nonce of the last acknowledged bind: the relay answers it again when the peer binds */
  ackedNonce?: string
  /** binds sent since the relay last acknowledged one */
  unacked: number
  bindTimer?: NodeJS.Timeout
  renewTimer?: NodeJS.Timeout
  requestTimer?: NodeJS.Timeout
  retry: number
  /** why the last request was refused, if it was */
  refused?: string
}

/**
 * LOST_AFTER_BINDS: a bound allocation whose relay left this many binds in a row
 * unacknowledged (a refresh and its quick retries, about 4 s) is no longer used: the
 * relay is gone, or our NAT mapping toward it changed. Binds go on, and it is used again
 * once the relay answers.
 */
const LOST_AFTER_BINDS = 4

/** RETRYABLE refusals are worth asking again later. */
const RETRYABLE = new Set(['rate_limited', 'relay_unavailable', 'expired', 'key_changed'])

/**
 * createUdpRelayClient keeps kernel-relay allocations for peers. `request` asks the
 * controller (idempotent, retried while it cannot be sent); a grant (ours or one the peer
 * asked for) makes the client bind its side from the WireGuard port until the relay acks,
 * then rebind every refreshMs; `endpoint` is the relay port once the relay acked our bind and said the peer is bound too. Grants are renewed
 * before they expire while wanted; a revocation drops the allocation at once.
 */
/** UdpRelayClientHandle is a UdpRelayClient that also names the relay in use. */
export interface UdpRelayClientHandle extends UdpRelayClient {
  /** relayId is the id of the relay a peer's grant is on (for status), once bound */
  relayId: (peerWgKey: string) => string | undefined
}

export function createUdpRelayClient (init: UdpRelayClientInit): UdpRelayClientHandle {
  const { control, sharedPort, log } = init
  const publicKey = wireGuardPublicKey(init.wgPrivateKey)
  const refreshMs = init.refreshMs ?? 20_000
  const retryMs = init.retryMs ?? 250
  const requestRetryMs = init.requestRetryMs ?? 5_000
  const peers = new Map<string, PeerState>()
  const handlers = new Set<(peer: string) => void>()
  let closed = false

  const changed = (peer: string): void => { for (const h of handlers) h(peer) }
  const state = (peer: string): PeerState => {
    let s = peers.get(peer)
    if (s === undefined) peers.set(peer, s = { peer, wanted: false, released: false, releasePending: false, bound: false, peerBound: false, addresses: [], nonces: [], unacked: 0, retry: 0 })
    return s
  }

  function sendRequest (s: PeerState): void {
    clearTimeout(s.requestTimer)
    s.requestTimer = undefined
    if (closed || !s.wanted) return
    if (!control.send({ type: 'relay-request', peer: s.peer })) {
      s.requestTimer = setTimeout(() => sendRequest(s), requestRetryMs)
      s.requestTimer.unref()
    }
  }

  /** sendRelease tells the controller we no longer hold the allocation (again after a reconnect if it could not). */
  function sendRelease (s: PeerState): void {
    if (closed || s.wanted || !s.released) return
    s.releasePending = !control.send({ type: 'relay-release', peer: s.peer })
  }

  function stopGrant (s: PeerState): void {
    clearTimeout(s.bindTimer)
    clearTimeout(s.renewTimer)
    s.bindTimer = s.renewTimer = undefined
    s.grant = s.to = undefined
    s.bound = s.peerBound = false
    s.nonces = []
    s.unacked = 0
    s.ackedNonce = undefined
  }

  function sendBind (s: PeerState): void {
    const g = s.grant
    if (closed || g === undefined || s.to === undefined) return
    if (s.bound && s.unacked >= LOST_AFTER_BINDS) {
      log?.info({ peer: s.peer, unacked: s.unacked }, 'the relay stopped answering binds; not using it until it does')
      s.bound = s.peerBound = false
      s.retry = 0
      changed(s.peer)
    }
    if (!s.bound && s.unacked >= LOST_AFTER_BINDS && s.addresses.length > 1) nextAddress(s)
    const nonce = new Uint8Array(24)
    crypto.getRandomValues(nonce)
    s.nonces = [...s.nonces.slice(-3), toBase64(nonce)]
    const packet = encodeRelayBind({ allocation: g.allocation, timestampMs: Date.now(), nodePrivateKey: init.wgPrivateKey, nodePublicKey: publicKey, relayPublicKey: g.relayKey, nonce })
    sharedPort.send(packet, s.to).catch(err => log?.debug({ err: (err as Error).message, peer: s.peer }, 'relay bind not sent'))
    s.unacked++
    // Bound: the ack re-arms the refresh; this timer only fires when the bind went unanswered.
    const next = s.bound ? Math.min(5_000, retryMs * 2 ** (s.unacked - 1)) : Math.min(5_000, retryMs * 2 ** s.retry++)
    s.bindTimer = setTimeout(() => sendBind(s), next)
    s.bindTimer.unref()
  }

  /** nextAddress tries the relay's next address (the other family, say) after the current one went unanswered. */
  function nextAddress (s: PeerState): void {
    const address = s.addresses[(s.addresses.indexOf(s.to!.address) + 1) % s.addresses.length]!
    log?.info({ peer: s.peer, from: s.to!.address, to: address }, 'the relay does not answer at this address; trying its next one')
    s.to = { address, port: s.to!.port }
    s.unacked = 0
    s.retry = 0
  }

  async function onGrant (g: RelayGrant): Promise<void> {
    const s = state(g.peer)
    if (s.grant?.allocation !== g.allocation) {
      stopGrant(s)
      const { host, port } = parseHostPort(g.endpoint, 'relay endpoint')
      const addresses = await relayAddresses(host, init.resolve)
      if (closed || peers.get(g.peer) !== s) return
      s.addresses = addresses
      s.to = { address: addresses[0]!, port }
      s.retry = 0
      s.grant = g
      log?.info({ peer: g.peer, relay: g.relay, endpoint: g.endpoint }, 'relay granted; binding')
      sendBind(s)
    } else {
      s.grant = g
    }
    s.refused = undefined
    // Our request crossed our release: the controller took the request last, so say it again.
    if (!s.wanted && s.released) sendRelease(s)
    clearTimeout(s.renewTimer)
    const left = Date.parse(g.expires) - Date.now()
    // Renew a third of the way before it ends; the relay keeps the same allocation.
    s.renewTimer = setTimeout(() => {
      if (s.wanted) sendRequest(s)
      else {
        stopGrant(s)
        changed(s.peer)
      }
    }, Math.max(0, s.wanted ? left * 2 / 3 : left))
    s.renewTimer.unref()
    changed(g.peer)
  }

  function onRevoke (r: RelayRevoke): void {
    const s = peers.get(r.peer)
    if (s === undefined) return
    if (r.allocation !== undefined && s.grant?.allocation !== r.allocation) return
    log?.info({ peer: r.peer, code: r.code, message: r.message }, r.allocation === undefined ? 'relay request refused' : 'relay allocation revoked')
    stopGrant(s)
    s.refused = r.code
    if (s.wanted && RETRYABLE.has(r.code)) {
      s.requestTimer = setTimeout(() => sendRequest(s), requestRetryMs)
      s.requestTimer.unref()
    }
    changed(r.peer)
  }

  function onControlPacket (p: SharedPortPacket): void {
    const c = decodeControl(p.data)
    if (c?.kind !== ControlKind.RelayBindAck) return
    for (const s of peers.values()) {
      if (s.grant === undefined || s.to?.port !== p.from.port) continue
      const ack = openRelayBindAck(p.data, s.grant.relayKey, init.wgPrivateKey)
      const nonce = ack === undefined ? '' : toBase64(ack.bindNonce)
      if (ack === undefined || ack.allocation !== s.grant.allocation || !(s.nonces.includes(nonce) || nonce === s.ackedNonce)) continue
      if (nonce !== s.ackedNonce) { s.ackedNonce = nonce; s.nonces = [] }
      const peerNews = s.peerBound !== ack.peerBound
      s.peerBound = ack.peerBound
      s.unacked = 0
      clearTimeout(s.bindTimer)
      s.bindTimer = setTimeout(() => sendBind(s), refreshMs)
      s.bindTimer.unref()
      if (s.bound) {
        if (peerNews) changed(s.peer)
        return
      }
      s.bound = true
      s.retry = 0
      log?.info({ peer: s.peer, seenAs: `${ack.observed.address}:${ack.observed.port}` }, 'relay bound')
      changed(s.peer)
      return
    }
  }

  const offPacket = sharedPort.onPacket('control', onControlPacket)
  const offMessage = control.onMessage(msg => {
    if (closed) return
    if (msg.type === 'relay-grant') void onGrant(msg).catch(err => log?.info({ err: (err as Error).message, peer: msg.peer }, 'relay grant unusable'))
    else onRevoke(msg)
  })
  const offConnected = control.onConnected(() => {
    for (const s of peers.values()) {
      if (s.wanted && (s.grant === undefined || !s.bound)) sendRequest(s)
      else if (s.releasePending) sendRelease(s)
    }
  })

  return {
    request (peer) {
      if (closed) return
      const s = state(peer)
      if (s.wanted) return
      s.wanted = true
      // After a release the controller must hear that we hold the allocation again, grant or not.
      const ask = s.grant === undefined || s.released
      s.released = s.releasePending = false
      if (ask) sendRequest(s)
    },
    release (peer) {
      const s = peers.get(peer)
      if (s === undefined || !s.wanted) return
      s.wanted = false
      s.released = true
      clearTimeout(s.requestTimer)
      s.requestTimer = undefined
      // The grant stays in use until the controller revokes it (or it expires unrenewed):
      // the peer may still hold it, and then it forwards on.
      sendRelease(s)
    },
    endpoint: peer => {
      const s = peers.get(peer)
      // Only once both sides are bound: until then packets sent to the relay reach nobody.
      // The address the relay answered at: WireGuard must send where the bind went.
      return s?.bound === true && s.peerBound && s.to !== undefined ? formatHostPort(s.to.address, s.to.port) : undefined
    },
    relayId: peer => {
      const s = peers.get(peer)
      return s?.bound === true && s.peerBound ? s.grant?.relay : undefined
    },
    onChange (h) {
      handlers.add(h)
      return () => { handlers.delete(h) }
    },
    async close () {
      if (closed) return
      closed = true
      offPacket()
      offMessage()
      offConnected()
      for (const s of peers.values()) {
        stopGrant(s)
        clearTimeout(s.requestTimer)
      }
      peers.clear()
      handlers.clear()
    }
  }
}
