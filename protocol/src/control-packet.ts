/**
 * Control packets share the WireGuard UDP port with WireGuard (see the node's shared-port
 * rules): STUN answers and Warren's own packets (path probes, relay binds) arrive on that
 * port and must be told apart from WireGuard by a stateless nftables match.
 *
 * - A WireGuard message starts with a type byte 1..4 followed by three zero bytes.
 * - A Warren control packet starts with CONTROL_MAGIC ('W' 'R' 'N' then a version byte):
 *   bytes 1-3 are never zero, so no WireGuard message can match it.
 * - A STUN binding success response starts with 0x0101 (byte 1 non-zero, so never
 *   WireGuard) and carries the magic cookie 0x2112A442 at bytes 4-7.
 *
 * After the 4 magic bytes comes one kind byte, then the kind's body.
 */

/** CONTROL_MAGIC_U32 is the first four bytes of every Warren control packet, big-endian. */
export const CONTROL_MAGIC_U32 = 0x57524e01
/** CONTROL_MAGIC is CONTROL_MAGIC_U32 as bytes. */
export const CONTROL_MAGIC: Readonly<Uint8Array> = Uint8Array.of(0x57, 0x52, 0x4e, 0x01)
/** CONTROL_HEADER_LENGTH is magic plus kind. */
export const CONTROL_HEADER_LENGTH = 5

/** STUN_MAGIC_COOKIE is RFC 5389's fixed value at bytes 4-7 of every STUN message. */
export const STUN_MAGIC_COOKIE = 0x2112a442
/** STUN_BINDING_SUCCESS is the message type of a binding success response. */
export const STUN_BINDING_SUCCESS = 0x0101

/** ControlKind numbers the kinds of control packet. */
export const ControlKind = {
  /** path probe from a node to a peer's candidate (sealed to the peer's WireGuard key) */
  DiscoPing: 1,
  /** answer to a DiscoPing, sent back to where the ping came from */
  DiscoPong: 2,
  /** a node tells a relay its address for one allocation (sealed to the relay's key) */
  RelayBind: 3,
  /** the relay's answer to a RelayBind */
  RelayBindAck: 4
} as const
export type ControlKind = typeof ControlKind[keyof typeof ControlKind]

/** encodeControl frames a body as a control packet of one kind. */
export function encodeControl (kind: ControlKind, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(CONTROL_HEADER_LENGTH + body.length)
  out.set(CONTROL_MAGIC, 0)
  out[4] = kind
  out.set(body, CONTROL_HEADER_LENGTH)
  return out
}

/** decodeControl returns the kind and body of a control packet, or undefined for anything else. */
export function decodeControl (packet: Uint8Array): { kind: number, body: Uint8Array } | undefined {
  if (packet.length < CONTROL_HEADER_LENGTH) return undefined
  for (let i = 0; i < 4; i++) if (packet[i] !== CONTROL_MAGIC[i]) return undefined
  return { kind: packet[4]!, body: packet.subarray(CONTROL_HEADER_LENGTH) }
}

/** WgPortPacketClass says who a packet that arrived on the WireGuard port is for. */
export type WgPortPacketClass = 'wireguard' | 'stun' | 'control' | 'other'

/**
 * classifyWgPortPacket tells the same classes the node's nftables rules tell: it is the
 * reference the rules are tested against.
 */
export function classifyWgPortPacket (p: Uint8Array): WgPortPacketClass {
  if (p.length >= 4 && p[0]! >= 1 && p[0]! <= 4 && p[1] === 0 && p[2] === 0 && p[3] === 0) return 'wireguard'
  if (decodeControl(p) !== undefined) return 'control'
  if (p.length >= 20 && ((p[0]! << 8) | p[1]!) === STUN_BINDING_SUCCESS &&
      ((p[4]! << 24) | (p[5]! << 16) | (p[6]! << 8) | p[7]!) >>> 0 === STUN_MAGIC_COOKIE) return 'stun'
  return 'other'
}
