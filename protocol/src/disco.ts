import nacl from 'tweetnacl'
import ipaddr from 'ipaddr.js'
import { ControlKind, encodeControl, decodeControl } from './control-packet.js'
import { fromBase64, toBase64, toHex } from './encoding.js'
import { WarrenError } from './errors.js'

/**
 * Path probes ("disco", after Tailscale's discovery messages) travel between two nodes'
 * WireGuard ports to find a direct path. Each is sealed with nacl.box between the two
 * nodes' WireGuard X25519 keys, so only a node of the mesh can make one and nobody else
 * can steer a path. Layout after the control header (magic, kind):
 *
 *   sender WireGuard public key (32, clear: the receiver picks the key by it)
 *   nonce (24)
 *   box(kind (1), transaction id (12), sent-at ms (8, big-endian), [pong: source address])
 *
 * The kind is sealed too, so a ping cannot be replayed as a pong. The source address in a
 * pong is where the ping came from: the pinger learns its mapped address toward that peer.
 */

/** DISCO_TXID_LENGTH is the size of a probe's transaction id. */
export const DISCO_TXID_LENGTH = 12
/** DISCO_MAX_AGE_MS is how old (or how far in the future) a probe may be and still count. */
export const DISCO_MAX_AGE_MS = 30_000

const KEY = 32
const NONCE = nacl.box.nonceLength
const HEAD = KEY + NONCE

/** DiscoAddress is an IP address and UDP port; IPv6 without brackets. */
export interface DiscoAddress { address: string, port: number }

/** DiscoMessage is the sealed content of a DiscoPing or DiscoPong. */
export interface DiscoMessage {
  kind: 'ping' | 'pong'
  /** the ping's random id; a pong repeats the id of the ping it answers */
  txid: Uint8Array
  /** when the sender sealed it, ms since the epoch on the sender's clock */
  sentAt: number
  /** pong only: the address the ping arrived from */
  src?: DiscoAddress
}

/**
 * discoSharedKey precomputes the nacl.box key between our WireGuard private key and a
 * peer's public key (both base64): one X25519 per peer, not per probe.
 */
export function discoSharedKey (ourPrivateKey: string, theirPublicKey: string): Uint8Array {
  const priv = fromBase64(ourPrivateKey, KEY)
  const pub = fromBase64(theirPublicKey, KEY)
  if (priv === null || pub === null) throw new WarrenError('bad_key', 'disco: WireGuard keys must be 32 bytes in base64')
  return nacl.box.before(pub, priv)
}

/** sealDisco builds a DiscoPing or DiscoPong from `senderKey` (our base64 public key) with a shared key from discoSharedKey. */
export function sealDisco (msg: DiscoMessage, senderKey: string, shared: Uint8Array, random: (n: number) => Uint8Array = nacl.randomBytes): Uint8Array {
  const sender = fromBase64(senderKey, KEY)
  if (sender === null) throw new WarrenError('bad_key', 'disco: the sender key must be 32 bytes in base64')
  if (msg.txid.length !== DISCO_TXID_LENGTH) throw new WarrenError('bad_request', `disco: a transaction id is ${DISCO_TXID_LENGTH} bytes, not ${msg.txid.length}`)
  if (!Number.isSafeInteger(msg.sentAt) || msg.sentAt < 0) throw new WarrenError('bad_request', `disco: sentAt ${msg.sentAt} is not a whole number of ms since the epoch`)
  const addr = msg.kind === 'pong' ? encodeAddress(msg.src) : new Uint8Array(0)
  const plain = new Uint8Array(1 + DISCO_TXID_LENGTH + 8 + addr.length)
  plain[0] = msg.kind === 'ping' ? ControlKind.DiscoPing : ControlKind.DiscoPong
  plain.set(msg.txid, 1)
  const view = new DataView(plain.buffer)
  view.setBigUint64(1 + DISCO_TXID_LENGTH, BigInt(msg.sentAt))
  plain.set(addr, 1 + DISCO_TXID_LENGTH + 8)
  const nonce = random(NONCE)
  const boxed = nacl.box.after(plain, nonce, shared)
  const body = new Uint8Array(HEAD + boxed.length)
  body.set(sender, 0)
  body.set(nonce, KEY)
  body.set(boxed, HEAD)
  return encodeControl(plain[0] as ControlKind, body)
}

/**
 * discoSender returns the sender's base64 public key of a DiscoPing or DiscoPong, or
 * undefined for any other packet. Nothing is authenticated yet: open it with openDisco.
 */
export function discoSender (packet: Uint8Array): string | undefined {
  const c = decodeControl(packet)
  if (c === undefined || (c.kind !== ControlKind.DiscoPing && c.kind !== ControlKind.DiscoPong)) return undefined
  if (c.body.length < HEAD + nacl.box.overheadLength) return undefined
  return toBase64(c.body.subarray(0, KEY))
}

/** OpenedDisco is a probe that opened: who sealed it, and what it says. */
export interface OpenedDisco { sender: string, msg: DiscoMessage }

/**
 * openDisco opens a probe with the shared key `sharedFor` gives for the sender named in
 * the packet (undefined: not a peer of ours). It returns undefined when the packet was not
 * sealed by that sender for us, was altered, or is malformed. Age and replay are the
 * caller's to check (DiscoReplayGuard).
 */
export function openDisco (packet: Uint8Array, sharedFor: (sender: string) => Uint8Array | undefined): OpenedDisco | undefined {
  const c = decodeControl(packet)
  const sender = discoSender(packet)
  if (c === undefined || sender === undefined) return undefined
  const shared = sharedFor(sender)
  if (shared === undefined) return undefined
  const plain = nacl.box.open.after(c.body.subarray(HEAD), c.body.subarray(KEY, HEAD), shared)
  if (plain === null || plain.length < 1 + DISCO_TXID_LENGTH + 8 || plain[0] !== c.kind) return undefined
  const sentAt = Number(new DataView(plain.buffer, plain.byteOffset).getBigUint64(1 + DISCO_TXID_LENGTH))
  const txid = plain.slice(1, 1 + DISCO_TXID_LENGTH)
  const rest = plain.subarray(1 + DISCO_TXID_LENGTH + 8)
  if (c.kind === ControlKind.DiscoPing) return rest.length === 0 ? { sender, msg: { kind: 'ping', txid, sentAt } } : undefined
  const src = decodeAddress(rest)
  return src === undefined ? undefined : { sender, msg: { kind: 'pong', txid, sentAt, src } }
}

function encodeAddress (a: DiscoAddress | undefined): Uint8Array {
  if (a === undefined || !ipaddr.isValid(a.address)) throw new WarrenError('bad_request', `disco: a pong needs the ping's source IP address, not '${String(a?.address)}'`)
  if (!Number.isInteger(a.port) || a.port < 0 || a.port > 65535) throw new WarrenError('bad_request', `disco: port ${a.port} is not 0-65535`)
  const ip = ipaddr.process(a.address).toByteArray()
  const out = new Uint8Array(1 + ip.length + 2)
  out[0] = ip.length === 4 ? 4 : 6
  out.set(ip, 1)
  out[1 + ip.length] = a.port >> 8
  out[2 + ip.length] = a.port & 0xff
  return out
}

function decodeAddress (b: Uint8Array): DiscoAddress | undefined {
  const len = b[0] === 4 ? 4 : b[0] === 6 ? 16 : 0
  if (len === 0 || b.length !== 1 + len + 2) return undefined
  const address = ipaddr.fromByteArray([...b.subarray(1, 1 + len)]).toString()
  return { address, port: (b[1 + len]! << 8) | b[2 + len]! }
}

/**
 * DiscoReplayGuard refuses probes that are too old, too far in the future, or seen
 * before (per sender, kind and transaction id). Memory is bounded: entries leave once
 * they are too old to be accepted anyway, and at most `maxEntries` are kept.
 */
export interface DiscoReplayGuard {
  /** accept says whether to act on a message just opened from `sender`; `now` in ms */
  accept: (sender: string, msg: DiscoMessage, now: number) => boolean
  readonly size: number
}

/** createDiscoReplayGuard returns a guard with a window of `maxAgeMs` either side of now. */
export function createDiscoReplayGuard (opts: { maxAgeMs?: number, maxEntries?: number } = {}): DiscoReplayGuard {
  const maxAge = opts.maxAgeMs ?? DISCO_MAX_AGE_MS
  const maxEntries = opts.maxEntries ?? 65_536
  // insertion order is roughly expiry order: prune from the front
  const seen = new Map<string, number>()
  function prune (now: number): void {
    for (const [k, expires] of seen) {
      if (expires > now && seen.size < maxEntries) break
      seen.delete(k)
    }
  }
  return {
    accept (sender, msg, now) {
      prune(now)
      if (Math.abs(now - msg.sentAt) > maxAge) return false
      const key = `${sender}/${msg.kind}/${toHex(msg.txid)}`
      if (seen.has(key)) return false
      seen.set(key, Math.max(msg.sentAt, now) + maxAge)
      return true
    },
    get size () { return seen.size }
  }
}
