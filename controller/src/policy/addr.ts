import { formatIpPrefix, ipBits, parseIpAddress, parseIpPrefix, prefixContains } from '@warren/protocol'
import type { Cidr } from './types.js'

/**
 * parseCidr reads an IPv4/IPv6 address (as a /32 or /128) or a CIDR into its canonical
 * form, or returns undefined. Host bits of a CIDR are cleared, so `10.0.0.1/8` is `10.0.0.0/8`.
 */
export function parseCidr (s: string): Cidr | undefined {
  const prefix = parseIpPrefix(s)
  return prefix === undefined ? undefined : makeCidr(prefix.family, prefix.network, prefix.length)
}

/** hostCidr is the /32 or /128 of one address; it throws on a bad address (a node's IPs are trusted). */
export function hostCidr (ip: string): Cidr {
  const a = parseIpAddress(ip)
  if (a === undefined) throw new Error(`not an IP address: ${ip}`)
  return makeCidr(a.family, a.network, a.length)
}

function makeCidr (family: 4 | 6, network: bigint, length: number): Cidr {
  const prefix = { family, network, length }
  const hex = network.toString(16).padStart(ipBits(family) / 4, '0')
  return { family, network, length, text: formatIpPrefix(prefix), sortKey: `${family}${hex}${String(length).padStart(3, '0')}` }
}

/** cidrContains says whether `inner` lies entirely inside `outer`. */
export function cidrContains (outer: Cidr, inner: Cidr): boolean {
  return prefixContains(outer, inner)
}

/** ALL_V4 and ALL_V6 are what `*` means as a source address. */
export const ALL_V4 = parseCidr('0.0.0.0/0')!
export const ALL_V6 = parseCidr('::/0')!
