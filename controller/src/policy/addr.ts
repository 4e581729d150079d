import ipaddr from 'ipaddr.js'
import type { Cidr } from './types.js'

/**
 * parseCidr reads an IPv4/IPv6 address (as a /32 or /128) or a CIDR into its canonical
 * form, or returns undefined. Host bits of a CIDR are cleared, so `10.0.0.1/8` is `10.0.0.0/8`.
 */
export function parseCidr (s: string): Cidr | undefined {
  try {
    if (s.includes('/')) {
      if (!ipaddr.isValidCIDR(s)) return undefined
      const [addr, bits] = ipaddr.parseCIDR(s)
      return makeCidr(maskAddr(addr, bits), bits)
    }
    if (!ipaddr.isValid(s)) return undefined
    if (!ipaddr.IPv4.isValidFourPartDecimal(s) && !s.includes(':')) return undefined
    const addr = ipaddr.parse(s)
    return makeCidr(addr, addr.kind() === 'ipv4' ? 32 : 128)
  } catch {
    return undefined
  }
}

/** hostCidr is the /32 or /128 of one address; it throws on a bad address (a node's IPs are trusted). */
export function hostCidr (ip: string): Cidr {
  const c = parseCidr(ip)
  if (c === undefined || (c.bits !== 32 && c.bits !== 128)) throw new Error(`not an IP address: ${ip}`)
  return c
}

function makeCidr (addr: ipaddr.IPv4 | ipaddr.IPv6, bits: number): Cidr {
  const family = addr.kind() === 'ipv4' ? 4 : 6
  const bytes = addr.toByteArray()
  const sortKey = `${family}${bytes.map(b => b.toString(16).padStart(2, '0')).join('')}${bits.toString().padStart(3, '0')}`
  return { text: `${addr.toString()}/${bits}`, family, addr, bits, sortKey }
}

function maskAddr (addr: ipaddr.IPv4 | ipaddr.IPv6, bits: number): ipaddr.IPv4 | ipaddr.IPv6 {
  const bytes = addr.toByteArray()
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, bits - i * 8))
    bytes[i] = bytes[i]! & (0xff << (8 - keep)) & 0xff
  }
  return ipaddr.fromByteArray(bytes)
}

/** cidrContains says whether `inner` lies entirely inside `outer`. */
export function cidrContains (outer: Cidr, inner: Cidr): boolean {
  if (outer.family !== inner.family || inner.bits < outer.bits) return false
  return (inner.addr as ipaddr.IPv4).match(outer.addr as ipaddr.IPv4, outer.bits)
}

/** ALL_V4 and ALL_V6 are what `*` means as a source address. */
export const ALL_V4 = parseCidr('0.0.0.0/0')!
export const ALL_V6 = parseCidr('::/0')!
