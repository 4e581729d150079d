import { randomBytes } from 'node:crypto'
import ipaddr from 'ipaddr.js'
import { WarrenError } from '@warren/protocol'

/**
 * IPAM hands out mesh addresses. IPv4 comes from 100.64.0.0/10 in order, from a counter
 * that only grows (so an address is never given to a second node); IPv6 is the
 * controller's ULA /48 with the IPv4 address in its last 32 bits, as Tailscale does.
 */

const MESH_BASE = (100 << 24 >>> 0) + (64 << 16)
const MESH_SIZE = 1 << 22

/** isSkippedOffset says whether an offset in 100.64.0.0/10 must not be handed out. */
function isSkippedOffset (offset: number): boolean {
  const addr = MESH_BASE + offset
  const last = addr & 255
  // 100.100.100.0/24 holds MagicDNS (100.100.100.100); .0 and .255 confuse some stacks;
  // 100.115.92.0/23 is reserved by Tailscale (ChromeOS VMs) and outside `*` in policies.
  return last === 0 || last === 255 || (addr >>> 8) === ((100 << 16) | (100 << 8) | 100) || (addr >>> 9) === RESERVED_CHROMEOS_23
}

const RESERVED_CHROMEOS_23 = ((100 << 24) | (115 << 16) | (92 << 8)) >>> 9

/** nextIPv4 returns the next address after the counter `last` (0 = none given yet). */
export function nextIPv4 (last: number): { offset: number, ipv4: string } {
  let offset = last + 1
  while (offset < MESH_SIZE && isSkippedOffset(offset)) offset++
  if (offset >= MESH_SIZE) {
    throw new WarrenError('address_space_exhausted', 'no mesh IPv4 addresses left in 100.64.0.0/10', { status: 503 })
  }
  return { offset, ipv4: ipv4FromNumber(MESH_BASE + offset) }
}

function ipv4FromNumber (n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.')
}

/** meshIPv6 puts an IPv4 address into the last 32 bits of a /48 prefix such as `fdxx:xxxx:xxxx::`. */
export function meshIPv6 (ulaPrefix: string, ipv4: string): string {
  const prefix = ipaddr.IPv6.parse(ulaPrefix.replace(/\/48$/, '')).parts
  const v4 = ipaddr.IPv4.parse(ipv4).octets
  const parts = [prefix[0]!, prefix[1]!, prefix[2]!, 0, 0, 0, (v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!]
  return new ipaddr.IPv6(parts).toString()
}

/** randomUlaPrefix makes a random RFC 4193 /48 prefix, `fdXX:XXXX:XXXX::/48`. */
export function randomUlaPrefix (): string {
  const b = randomBytes(5)
  const hex = (hi: number, lo: number): string => ((hi << 8) | lo).toString(16)
  return `${hex(0xfd, b[0]!)}:${hex(b[1]!, b[2]!)}:${hex(b[3]!, b[4]!)}::/48`
}
