import { WarrenError, formatIpAddress, formatIpPrefix, parseIpAddress, parseIpPrefix } from '@warren/protocol'

/**
 * normalizeCidr returns a prefix in the one canonical form that `ip` and `wg` print
 * (network address, compressed IPv6, explicit length), so desired and current state
 * compare as strings. A bare address gets /32 or /128. Bad input throws a clear error.
 */
export function normalizeCidr (s: string, field = 'prefix'): string {
  const known = canonical.get(s)
  if (known !== undefined) return known
  const result = parseCidr(s, field)
  // Maps repeat the same peer prefixes on every apply: remember them, within bounds.
  if (canonical.size >= CACHE_LIMIT) canonical.clear()
  canonical.set(s, result)
  return result
}

const CACHE_LIMIT = 100_000
const canonical = new Map<string, string>()

function parseCidr (s: string, field: string): string {
  const text = String(s).trim()
  const prefix = parseIpPrefix(text)
  if (prefix === undefined) {
    throw new WarrenError('bad_config', `${field} '${text}' is not an IP prefix: write it like 100.64.0.5/32 or fd7a:115c:a1e0::5/128`, { field })
  }
  return formatIpPrefix(prefix)
}

/** normalizeAddress keeps the host part: `100.64.0.5/10` stays an address with its prefix length. */
export function normalizeAddress (s: string, field = 'address'): string {
  const text = String(s).trim()
  const slash = text.indexOf('/')
  const addr = parseIpAddress(slash < 0 ? text : text.slice(0, slash))
  const prefix = parseIpPrefix(text)
  if (addr === undefined || prefix === undefined) {
    throw new WarrenError('bad_config', `${field} '${text}' is not an IP address with prefix length: write it like 100.64.0.5/32`, { field })
  }
  return `${formatIpAddress(addr.family, addr.network)}/${prefix.length}`
}

/** isIpv6Prefix says whether a normalized prefix is IPv6. */
export function isIpv6Prefix (cidr: string): boolean {
  return cidr.includes(':')
}

/** IFNAME_PATTERN is what Linux accepts as an interface name (IFNAMSIZ is 16 with the NUL). */
const IFNAME_PATTERN = /^[A-Za-z0-9_.=+-]{1,15}$/

/** checkInterfaceName throws a clear error for a name Linux would refuse. */
export function checkInterfaceName (name: string, field = 'interfaceName'): void {
  if (typeof name !== 'string' || !IFNAME_PATTERN.test(name)) {
    throw new WarrenError('bad_config', `interface name '${String(name)}' is not valid: use 1-15 letters, digits, '_', '.', '-' (for example 'warren0')`, { field })
  }
}
