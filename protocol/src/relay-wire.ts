import nacl from 'tweetnacl'
import ipaddr from 'ipaddr.js'
import { ControlKind, encodeControl, decodeControl } from './control-packet.js'
import { fromBase64, toBase64 } from './encoding.js'

/**
 * Relay binds: how a node tells a kernel relay the public address of its WireGuard port
 * for one allocation. The node sends a RelayBind FROM its WireGuard port (through the
 * shared port) TO the relay port allocated for its side, so the bind gets the NAT mapping
 * that WireGuard's data to that port will get, even behind a symmetric NAT. The relay
 * learns the mapping from the packet's source and answers with a RelayBindAck from the
 * same port.
 *
 * RelayBind body (after the 5-byte control header):
 *   node WireGuard public key (32) | nonce (24) | box(payload) sealed from the node's
 *   WireGuard key to the relay's key; payload = version 1 (1) | allocation id (16) |
 *   timestamp in ms since the epoch (8, big-endian)
 * RelayBindAck body:
 *   nonce (24) | box(payload) sealed from the relay's key to the node's key; payload =
 *   allocation id (16) | the bind's nonce (24) | flags (1: bit 0 = the other side is bound
 *   too, so the pair forwards) | observed port (2) | address (4 or 16). The relay also sends
 *   an ack (to the side's last bind) when the other side binds, so a node learns at once
 *   that its peer can use the relay.
 *
 * Only the holder of the node's WireGuard private key can make a bind the relay opens,
 * and only the relay can make an ack the node opens. Replay is refused with ReplayWindow.
 */

/** RELAY_ALLOCATION_ID_BYTES is the size of an allocation id; its text form is base64url. */
export const RELAY_ALLOCATION_ID_BYTES = 16
const BIND_VERSION = 1
const KEY = 32
const NONCE = nacl.box.nonceLength
const BIND_PAYLOAD = 1 + RELAY_ALLOCATION_ID_BYTES + 8
/** RELAY_BIND_LENGTH is the size of every RelayBind packet. */
export const RELAY_BIND_LENGTH = 5 + KEY + NONCE + nacl.box.overheadLength + BIND_PAYLOAD

/** allocationIdToBytes reads an allocation id's text form; undefined when malformed. */
export function allocationIdToBytes (id: string): Uint8Array | undefined {
  if (!/^[A-Za-z0-9_-]{22}$/.test(id)) return undefined
  const b = new Uint8Array(Buffer.from(id, 'base64url'))
  return b.length === RELAY_ALLOCATION_ID_BYTES && Buffer.from(b).toString('base64url') === id ? b : undefined
}

/** allocationIdFromBytes is the text form (base64url, 22 characters) of an allocation id. */
export function allocationIdFromBytes (b: Uint8Array): string {
  return Buffer.from(b).toString('base64url')
}

/** newAllocationId makes a random allocation id. */
export function newAllocationId (): string {
  return allocationIdFromBytes(nacl.randomBytes(RELAY_ALLOCATION_ID_BYTES))
}

function key (b64: string, what: string): Uint8Array {
  const k = fromBase64(b64, KEY)
  if (k === null) throw new Error(`${what} must be a 32-byte key in base64`)
  return k
}

/** RelayBindInput is what a node seals into a bind. */
export interface RelayBindInput {
  allocation: string
  /** ms since the epoch */
  timestampMs: number
  /** the node's WireGuard key pair, base64 */
  nodePrivateKey: string
  nodePublicKey: string
  /** RelayInfo.key */
  relayPublicKey: string
  /** for tests; random by default */
  nonce?: Uint8Array
}

/** RelayBind is a bind the relay opened: who sent it, for which allocation, when. */
export interface RelayBind {
  nodeKey: string
  allocation: string
  timestampMs: number
  nonce: Uint8Array
}

/** encodeRelayBind makes a sealed RelayBind control packet. */
export function encodeRelayBind (b: RelayBindInput): Uint8Array {
  const alloc = allocationIdToBytes(b.allocation)
  if (alloc === undefined) throw new Error(`relay bind: allocation id '${b.allocation}' is not 22 characters of base64url`)
  const payload = new Uint8Array(BIND_PAYLOAD)
  payload[0] = BIND_VERSION
  payload.set(alloc, 1)
  new DataView(payload.buffer).setBigUint64(1 + RELAY_ALLOCATION_ID_BYTES, BigInt(Math.floor(b.timestampMs)))
  const nonce = b.nonce ?? nacl.randomBytes(NONCE)
  const sealed = nacl.box(payload, nonce, key(b.relayPublicKey, 'relay key'), key(b.nodePrivateKey, 'node private key'))
  const body = new Uint8Array(KEY + NONCE + sealed.length)
  body.set(key(b.nodePublicKey, 'node public key'), 0)
  body.set(nonce, KEY)
  body.set(sealed, KEY + NONCE)
  return encodeControl(ControlKind.RelayBind, body)
}

/**
 * openRelayBind opens a RelayBind with the relay's private key; undefined for anything
 * that is not a well-formed bind sealed to this relay (wrong kind, size, key or MAC).
 */
export function openRelayBind (packet: Uint8Array, relayPrivateKey: string): RelayBind | undefined {
  const c = decodeControl(packet)
  if (c === undefined || c.kind !== ControlKind.RelayBind || packet.length !== RELAY_BIND_LENGTH) return undefined
  const nodeKey = c.body.slice(0, KEY)
  const nonce = c.body.slice(KEY, KEY + NONCE)
  const payload = nacl.box.open(c.body.subarray(KEY + NONCE), nonce, nodeKey, key(relayPrivateKey, 'relay private key'))
  if (payload === null || payload.length !== BIND_PAYLOAD || payload[0] !== BIND_VERSION) return undefined
  const ts = new DataView(payload.buffer, payload.byteOffset).getBigUint64(1 + RELAY_ALLOCATION_ID_BYTES)
  return {
    nodeKey: toBase64(nodeKey),
    allocation: allocationIdFromBytes(payload.subarray(1, 1 + RELAY_ALLOCATION_ID_BYTES)),
    timestampMs: Number(ts),
    nonce
  }
}

/** RelayBindAckInput is what a relay seals into an ack. */
export interface RelayBindAckInput {
  allocation: string
  bindNonce: Uint8Array
  /** the bind's source as the relay saw it: the node's public mapping */
  observed: { address: string, port: number }
  /** the other side of the allocation is bound too: the kernel forwards the pair */
  peerBound: boolean
  relayPrivateKey: string
  nodePublicKey: string
  nonce?: Uint8Array
}

/** RelayBindAck is an ack a node opened. */
export interface RelayBindAck {
  allocation: string
  bindNonce: Uint8Array
  observed: { address: string, port: number }
  /** the other side is bound too, so packets sent to the relay reach the peer */
  peerBound: boolean
}

/** encodeRelayBindAck makes a sealed RelayBindAck control packet. */
export function encodeRelayBindAck (a: RelayBindAckInput): Uint8Array {
  const alloc = allocationIdToBytes(a.allocation)
  if (alloc === undefined) throw new Error(`relay ack: allocation id '${a.allocation}' is malformed`)
  if (a.bindNonce.length !== NONCE) throw new Error('relay ack: the bind nonce is 24 bytes')
  if (!ipaddr.isValid(a.observed.address)) throw new Error(`relay ack: '${a.observed.address}' is not an IP address`)
  const addr = Uint8Array.from(ipaddr.parse(a.observed.address).toByteArray())
  const payload = new Uint8Array(RELAY_ALLOCATION_ID_BYTES + NONCE + 3 + addr.length)
  payload.set(alloc, 0)
  payload.set(a.bindNonce, RELAY_ALLOCATION_ID_BYTES)
  payload[RELAY_ALLOCATION_ID_BYTES + NONCE] = a.peerBound ? 1 : 0
  new DataView(payload.buffer).setUint16(RELAY_ALLOCATION_ID_BYTES + NONCE + 1, a.observed.port)
  payload.set(addr, RELAY_ALLOCATION_ID_BYTES + NONCE + 3)
  const nonce = a.nonce ?? nacl.randomBytes(NONCE)
  const sealed = nacl.box(payload, nonce, key(a.nodePublicKey, 'node public key'), key(a.relayPrivateKey, 'relay private key'))
  const body = new Uint8Array(NONCE + sealed.length)
  body.set(nonce, 0)
  body.set(sealed, NONCE)
  return encodeControl(ControlKind.RelayBindAck, body)
}

/** openRelayBindAck opens an ack from the relay with this public key; undefined for anything else. */
export function openRelayBindAck (packet: Uint8Array, relayPublicKey: string, nodePrivateKey: string): RelayBindAck | undefined {
  const c = decodeControl(packet)
  if (c === undefined || c.kind !== ControlKind.RelayBindAck || c.body.length < NONCE + nacl.box.overheadLength) return undefined
  const payload = nacl.box.open(c.body.subarray(NONCE), c.body.subarray(0, NONCE), key(relayPublicKey, 'relay key'), key(nodePrivateKey, 'node private key'))
  if (payload === null) return undefined
  const addrLen = payload.length - RELAY_ALLOCATION_ID_BYTES - NONCE - 3
  if (addrLen !== 4 && addrLen !== 16) return undefined
  const at = RELAY_ALLOCATION_ID_BYTES + NONCE
  const addr = payload.subarray(at + 3)
  return {
    allocation: allocationIdFromBytes(payload.subarray(0, RELAY_ALLOCATION_ID_BYTES)),
    bindNonce: payload.slice(RELAY_ALLOCATION_ID_BYTES, at),
    observed: { address: ipaddr.fromByteArray([...addr]).toString(), port: new DataView(payload.buffer, payload.byteOffset).getUint16(at + 1) },
    peerBound: (payload[at]! & 1) === 1
  }
}

/** ReplayVerdict says whether a timestamped, nonced packet is fresh. */
export type ReplayVerdict = 'ok' | 'stale' | 'replay'

/**
 * ReplayWindow refuses authenticated packets that are too far from our clock ('stale')
 * or whose nonce was already seen within the window ('replay'). Nonces are remembered
 * only as long as a packet with them could still be fresh, so memory is bounded by the
 * rate of accepted packets (which callers rate-limit).
 */
export interface ReplayWindow {
  check: (nonce: Uint8Array, timestampMs: number, nowMs?: number) => ReplayVerdict
  size: () => number
}

/** createReplayWindow: packets more than skewMs away from now are stale (default 30 s). */
export function createReplayWindow (skewMs = 30_000): ReplayWindow {
  const seen = new Map<string, number>()
  let lastSweep = 0
  return {
    check (nonce, timestampMs, nowMs = Date.now()) {
      if (nowMs - lastSweep > skewMs) {
        for (const [n, until] of seen) if (until < nowMs) seen.delete(n)
        lastSweep = nowMs
      }
      if (Math.abs(nowMs - timestampMs) > skewMs) return 'stale'
      const id = toBase64(nonce)
      if (seen.has(id)) return 'replay'
      seen.set(id, timestampMs + 2 * skewMs)
      return 'ok'
    },
    size: () => seen.size
  }
}

/** isAllocationId says whether s is the text form of an allocation id. */
export function isAllocationId (s: string): boolean {
  return allocationIdToBytes(s) !== undefined
}
