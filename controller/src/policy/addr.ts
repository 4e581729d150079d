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

/**
 * MESH_V4_SOURCES is what `*` means among IPv4 sources: the mesh range 100.64.0.0/10
 * without 100.115.92.0/23, which Tailscale reserves (ChromeOS VMs) and leaves out of `*`
 * (Warren's IPAM never hands it out either). Addresses outside the mesh only come in
 * through a subnet router, so `*` covers them only for its approved routes.
 */
export const MESH_V4_SOURCES: readonly Cidr[] = [
  '100.64.0.0/11', '100.96.0.0/12', '100.112.0.0/15', '100.114.0.0/16', '100.115.0.0/18', '100.115.64.0/20',
  '100.115.80.0/21', '100.115.88.0/22', '100.115.94.0/23', '100.115.96.0/19', '100.115.128.0/17', '100.116.0.0/14', '100.120.0.0/13'
].map(s => parseCidr(s)!)

/** DEFAULT_MESH_IPV6 is the mesh's IPv6 /48 when the engine is not told the controller's own (tests, tools). */
export const DEFAULT_MESH_IPV6 = 'fd7a:115c:a1e0::/48'

/** meshSources is what `*` means as a source on a mesh whose IPv6 addresses come from `meshIpv6` (a /48). */
export function meshSources (meshIpv6: string): Cidr[] {
  const v6 = parseCidr(meshIpv6)
  if (v6 === undefined || v6.family !== 6) throw new Error(`not an IPv6 prefix: ${meshIpv6}`)
  return [...MESH_V4_SOURCES, v6]
}
