/**
 * IpProto holds the one meaning of an IP protocol that the policy compiler, the wire
 * format and the node's firewall share: IANA numbers, the names policies may use, and
 * which protocols carry ports. Kept here so the controller and the node cannot disagree
 * on whether a rule's ports apply (Tailscale keeps the same in types/ipproto).
 */

/** IpProto names the IANA protocol numbers Warren refers to by name. */
export const IpProto = {
  ICMPv4: 1,
  IGMP: 2,
  IPinIP: 4,
  TCP: 6,
  EGP: 8,
  IGP: 9,
  UDP: 17,
  DCCP: 33,
  GRE: 47,
  ESP: 50,
  AH: 51,
  ICMPv6: 58,
  SCTP: 132,
  UDPLite: 136
} as const

/**
 * PROTOCOLS_WITH_PORTS are the protocols whose header starts with a source and a
 * destination port, so a rule's ports judge them; for every other protocol a rule allows
 * the protocol from its sources whatever its ports say.
 */
export const PROTOCOLS_WITH_PORTS: readonly number[] = [IpProto.TCP, IpProto.UDP, IpProto.DCCP, IpProto.SCTP, IpProto.UDPLite]
const WITH_PORTS: ReadonlySet<number> = new Set(PROTOCOLS_WITH_PORTS)

/** protocolHasPorts says whether a protocol's rules are judged by destination port. */
export function protocolHasPorts (proto: number): boolean {
  return WITH_PORTS.has(proto)
}

const NAMES: Readonly<Record<number, string>> = {
  1: 'icmp', 2: 'igmp', 4: 'ipip', 6: 'tcp', 8: 'egp', 9: 'igp', 17: 'udp', 33: 'dccp',
  47: 'gre', 50: 'esp', 51: 'ah', 58: 'icmpv6', 132: 'sctp', 136: 'udplite'
}

/** protocolName is the short name of a protocol number (`tcp`), or the number as text. */
export function protocolName (proto: number): string {
  return NAMES[proto] ?? String(proto)
}

/** isProtocolNumber says whether n is an IANA protocol number (an integer 0-255). */
export function isProtocolNumber (n: number): boolean {
  return Number.isInteger(n) && n >= 0 && n <= 255
}
