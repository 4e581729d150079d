import {
  createDiscoReplayGuard, discoSharedKey, openDisco, sealDisco, toHex, randomBytes,
  wireGuardPublicKey, DISCO_TXID_LENGTH, type DiscoReplayGuard
} from '@warren/protocol'
import type { SharedPort, SharedPortPacket, UdpAddress } from './types.js'

/** DiscoPong is an authenticated answer from a peer to one of our pings. */
export interface DiscoPong {
  peerKey: string
  /** hex of the ping's transaction id */
  txid: string
  /** where the pong came from (the peer's address as we see it) */
  from: UdpAddress
  /** where the peer saw our ping come from: our mapped address toward that peer */
  src: UdpAddress
}

/** DiscoInit configures createDisco. */
export interface DiscoInit {
  port: SharedPort
  /** our WireGuard private key (base64); never logged */
  privateKey: string
  /** ms since the epoch; tests pass their own */
  now?: () => number
  /** onError hears about sends that failed (a probe is best effort) */
  onError?: (e: Error) => void
}

/**
 * Disco sends and answers path probes on the shared WireGuard port. Only peers set with
 * setPeers may probe us: a probe from any other key, a forged, altered, stale or
 * replayed one is dropped without an answer.
 */
export interface Disco {
  /** setPeers lists the WireGuard keys of the peers we probe and answer */
  setPeers: (keys: Iterable<string>) => void
  /** ping sends a probe to a peer's candidate address; returns the transaction id (hex) */
  ping: (peerKey: string, to: UdpAddress, opts?: { ttl?: number }) => string
  /** onPing hears every authenticated ping (already answered) with the address it came from */
  onPing: (handler: (peerKey: string, from: UdpAddress) => void) => () => void
  onPong: (handler: (pong: DiscoPong) => void) => () => void
  close: () => void
}

/** createDisco attaches path probing to a shared port. */
export function createDisco (init: DiscoInit): Disco {
  const { port } = init
  const now = init.now ?? Date.now
  const ourKey = wireGuardPublicKey(init.privateKey)
  const shared = new Map<string, Uint8Array>()
  const guard: DiscoReplayGuard = createDiscoReplayGuard()
  const pingHandlers = new Set<(peerKey: string, from: UdpAddress) => void>()
  const pongHandlers = new Set<(pong: DiscoPong) => void>()

  function sharedFor (peerKey: string): Uint8Array | undefined {
    return shared.get(peerKey)
  }

  function send (data: Uint8Array, to: UdpAddress, opts?: { ttl?: number }): void {
    port.send(data, to, opts).catch((e: unknown) => init.onError?.(e instanceof Error ? e : new Error(String(e))))
  }

  function receive (p: SharedPortPacket): void {
    const opened = openDisco(p.data, sharedFor)
    if (opened === undefined || !guard.accept(opened.sender, opened.msg, now())) return
    const { sender, msg } = opened
    if (msg.kind === 'ping') {
      send(sealDisco({ kind: 'pong', txid: msg.txid, sentAt: now(), src: p.from }, ourKey, shared.get(sender)!), p.from)
      for (const h of pingHandlers) h(sender, p.from)
    } else if (msg.src !== undefined) {
      const pong: DiscoPong = { peerKey: sender, txid: toHex(msg.txid), from: p.from, src: msg.src }
      for (const h of pongHandlers) h(pong)
    }
  }
  const off = port.onPacket('control', receive)

  return {
    setPeers (keys) {
      const want = new Set(keys)
      for (const k of shared.keys()) if (!want.has(k)) shared.delete(k)
      for (const k of want) if (!shared.has(k) && k !== ourKey) shared.set(k, discoSharedKey(init.privateKey, k))
    },
    ping (peerKey, to, opts) {
      const key = shared.get(peerKey)
      if (key === undefined) throw new Error(`disco: ${peerKey} is not a peer (setPeers first)`)
      const txid = randomBytes(DISCO_TXID_LENGTH)
      send(sealDisco({ kind: 'ping', txid, sentAt: now() }, ourKey, key), to, opts)
      return toHex(txid)
    },
    onPing (h) { pingHandlers.add(h); return () => pingHandlers.delete(h) },
    onPong (h) { pongHandlers.add(h); return () => pongHandlers.delete(h) },
    close () {
      off()
      pingHandlers.clear()
      pongHandlers.clear()
    }
  }
}
