import type { FilterRule } from './messages.js'
import { mergeCaps, type CapMap } from './capabilities.js'
import { parseIpAddress, parseIpPrefix, prefixContains, type IpPrefix } from './ip.js'
import { protocolHasPorts } from './ipproto.js'

/** FilterPacket is what a filter judges: source address, IP protocol, destination port. */
export interface FilterPacket {
  src: string
  proto: number
  /** destination port; only read for protocols with ports */
  dport?: number
  /** destination address; only read for forwarded packets (forwardAllows) */
  dst?: string
}

/**
 * filterAllows is the one reference meaning of a node's inbound filter: a packet is let in
 * when some rule lists its protocol, one of the rule's `srcs` (an address, a prefix, or `*`
 * for every address) contains its source, and, for protocols with ports, one of the
 * rule's port ranges holds its destination port. The controller's `explain` and the
 * node's ruleset tests both hold their answers to this function.
 */
export function filterAllows (filter: readonly FilterRule[], packet: FilterPacket): boolean {
  return matchRules(filter.filter(r => r.dsts === undefined), packet)
}

/**
 * forwardAllows is the reference meaning of a subnet router's forward filter: a packet from
 * the mesh to `packet.dst` is forwarded when a rule with `dsts` (one of which contains the
 * destination) allows its source, protocol and port as filterAllows would.
 */
export function forwardAllows (filter: readonly FilterRule[], packet: FilterPacket): boolean {
  const dst = packet.dst === undefined ? undefined : parseIpAddress(packet.dst)
  if (dst === undefined) return false
  return matchRules(filter.filter(r => r.dsts?.some(d => {
    const p = parseIpPrefix(d)
    return p !== undefined && prefixContains(p, dst)
  }) === true), packet)
}

function matchRules (filter: readonly FilterRule[], packet: FilterPacket): boolean {
  const src = parseIpAddress(packet.src)
  if (src === undefined) return false
  const withPorts = protocolHasPorts(packet.proto)
  return filter.some(rule => {
    if (!rule.protos.includes(packet.proto)) return false
    if (withPorts && (packet.dport === undefined || !rule.ports.some(p => packet.dport! >= p.first && packet.dport! <= p.last))) return false
    return srcsContain(rule.srcs, src)
  })
}

/** srcsContain says whether a rule's `srcs` (addresses, prefixes, or `*` for every address) hold an address. */
export function srcsContain (srcs: readonly string[], addr: IpPrefix): boolean {
  return srcs.some(s => {
    if (s === '*') return true
    const p = parseIpPrefix(s)
    return p !== undefined && prefixContains(p, addr)
  })
}

/**
 * capabilitiesOf is the one meaning of the capability rules of a node's filter (rules with
 * `caps`): what a caller at `ip` holds on this node. Every rule whose sources contain the
 * address adds its values, in filter order (the policy's grant order), so two grants of the
 * same capability give one list with the values of both, as in Tailscale. An empty list
 * still names the capability. An address no rule names holds nothing.
 */
export function capabilitiesOf (filter: readonly FilterRule[], ip: string): CapMap {
  const addr = parseIpAddress(ip)
  if (addr === undefined) return {}
  return mergeCaps(filter.flatMap(rule => rule.caps === undefined || !srcsContain(rule.srcs, addr) ? [] : [rule.caps]))
}
