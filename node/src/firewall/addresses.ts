/**
 * addresses reads filter sources and element addresses into inclusive number ranges and
 * prints them back as nft does, through protocol's one address type (parseIpPrefix,
 * prefixRange, formatIpAddress), so the node and the controller read a prefix alike.
 */
import { WarrenError, formatIpAddress, ipBits, parseIpAddress, parseIpPrefix, prefixRange } from '@warren/protocol'

/** AddrRange is an inclusive range of IPv4 (32-bit) or IPv6 (128-bit) addresses. */
export interface AddrRange {
  v6: boolean
  lo: bigint
  hi: bigint
  /** nft text, once formatted */
  text?: string
  /** one address (lo === hi), known without comparing bigints again */
  single?: boolean
}

const allOnes = (v6: boolean): bigint => (1n << BigInt(ipBits(v6 ? 6 : 4))) - 1n

/** EVERY_ADDRESS is what `*` stands for: every IPv4 and every IPv6 address. */
const everyAddress = (): AddrRange[] => [{ v6: false, lo: 0n, hi: allOnes(false) }, { v6: true, lo: 0n, hi: allOnes(true) }]

/**
 * parseSource reads one `srcs` entry (an address, a prefix whose host bits are ignored, or
 * `*`) into ranges, or throws WarrenError `bad_filter` naming `where`.
 */
export function parseSource (s: string, where: string): AddrRange[] {
  if (s === '*') return everyAddress()
  const prefix = parseIpPrefix(s)
  if (prefix === undefined) throw sourceError(s, where)
  const { first, last } = prefixRange(prefix)
  return [{ v6: prefix.family === 6, lo: first, hi: last }]
}

/** sourceError says why a source is not a prefix: a length too long for its address, or not one at all. */
function sourceError (s: string, where: string): WarrenError {
  const slash = s.indexOf('/')
  const addr = slash < 0 ? undefined : parseIpAddress(s.slice(0, slash))
  const len = s.slice(slash + 1)
  if (addr !== undefined && /^\d{1,3}$/.test(len) && Number(len) > ipBits(addr.family)) {
    return new WarrenError('bad_filter', `${where}: prefix length /${Number(len)} is too long for "${s}" (at most /${ipBits(addr.family)})`, { field: where })
  }
  return new WarrenError('bad_filter', `${where}: "${s}" is not an IP address or CIDR; write for example 100.64.0.1, 100.64.0.0/10, fd7a::1/128 or *`, { field: where })
}

/** parseAddrText reads an element's address field: an address, a prefix, or `lo-hi`. */
export function parseAddrText (text: string, where: string): AddrRange {
  const dash = text.indexOf('-')
  if (dash < 0) return parseSource(text, where)[0]!
  const lo = parseIpAddress(text.slice(0, dash))
  const hi = parseIpAddress(text.slice(dash + 1))
  if (lo === undefined || hi === undefined || lo.family !== hi.family) throw new Error(`${where}: bad address range "${text}"`)
  return { v6: lo.family === 6, lo: lo.network, hi: hi.network }
}

/** formatAddrRange renders a range as nft prints it: an address, a prefix, or `lo-hi`. */
export function formatAddrRange (v6: boolean, lo: bigint, hi: bigint): string {
  const family = v6 ? 6 : 4
  if (lo === hi) return formatIpAddress(family, lo)
  const size = hi - lo + 1n
  if ((size & (size - 1n)) === 0n && (lo & (size - 1n)) === 0n) {
    let hostBits = 0
    while ((1n << BigInt(hostBits)) < size) hostBits++
    return `${formatIpAddress(family, lo)}/${ipBits(family) - hostBits}`
  }
  return `${formatIpAddress(family, lo)}-${formatIpAddress(family, hi)}`
}

/** packetSource parses a packet's source address for the tracers. */
export function packetSource (src: string): { v6: boolean, n: bigint } | undefined {
  const a = parseIpAddress(src)
  return a === undefined ? undefined : { v6: a.family === 6, n: a.network }
}
