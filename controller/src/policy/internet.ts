import { servedRoutes, type RouteHolder } from '@warren/protocol'
import { parseCidr } from './addr.js'
import type { Cidr } from './types.js'
import { viaServes } from './via.js'

/**
 * internet: what `autogroup:internet` means, the destinations an exit node forwards to.
 * It is every address except those that are never "the internet": private ranges (the
 * exit node's own LAN is a subnet route's business, as in Tailscale), the mesh's own
 * ranges (100.64.0.0/10 and, inside fc00::/7, the mesh's ULA /48), loopback, link-local,
 * multicast and the reserved 0.0.0.0/8 and 240.0.0.0/4.
 */

/** NOT_INTERNET are the ranges that autogroup:internet leaves out. */
export const NOT_INTERNET: readonly string[] = [
  '0.0.0.0/8', '10.0.0.0/8', '100.64.0.0/10', '127.0.0.0/8', '169.254.0.0/16', '172.16.0.0/12', '192.168.0.0/16', '224.0.0.0/4', '240.0.0.0/4',
  '::/128', '::1/128', 'fc00::/7', 'fe80::/10', 'ff00::/8'
]

/** subtractPrefixes is `from` without the addresses of `holes`, as the fewest aligned prefixes, in address order. */
export function subtractPrefixes (from: Cidr, holes: readonly Cidr[]): Cidr[] {
  const bits = from.family === 4 ? 32 : 128
  const mine = holes.filter(h => h.family === from.family)
  const out: Cidr[] = []
  const walk = (network: bigint, length: number): void => {
    const size = 1n << BigInt(bits - length)
    const overlapping = mine.filter(h => {
      const hSize = 1n << BigInt(bits - h.length)
      return h.network < network + size && network < h.network + hSize
    })
    if (overlapping.length === 0) { out.push(makePrefix(from.family, network, length)); return }
    if (overlapping.some(h => h.length <= length)) return
    walk(network, length + 1)
    walk(network + size / 2n, length + 1)
  }
  walk(from.network, from.length)
  return out
}

function makePrefix (family: 4 | 6, network: bigint, length: number): Cidr {
  const text = family === 4
    ? [24, 16, 8, 0].map(s => String(Number((network >> BigInt(s)) & 255n))).join('.')
    : [...Array(8).keys()].map(i => ((network >> BigInt(112 - 16 * i)) & 0xffffn).toString(16)).join(':')
  return parseCidr(`${text}/${length}`)!
}

const holes = NOT_INTERNET.map(t => parseCidr(t)!)

/** INTERNET_RANGES are autogroup:internet per family: IPv4, then IPv6, each in address order. */
export const INTERNET_RANGES: Readonly<Record<4 | 6, readonly Cidr[]>> = {
  4: subtractPrefixes(parseCidr('0.0.0.0/0')!, holes),
  6: subtractPrefixes(parseCidr('::/0')!, holes)
}

/** INTERNET_KEY is the destination key of autogroup:internet (a compiled rule's `ag:` key). */
export const INTERNET_KEY = 'ag:internet'

/** exitFamilies are the address families whose default route a node serves as an exit node (approved and advertised). */
export function exitFamilies (node: RouteHolder): Array<4 | 6> {
  const served = servedRoutes(node)
  return ([[4, '0.0.0.0/0'], [6, '::/0']] as const).filter(([, r]) => served.includes(r)).map(([f]) => f)
}

/**
 * internetKeysServedBy are the destination keys (of `keys`) whose traffic an exit node with
 * these tags forwards to the internet: autogroup:internet, and autogroup:internet with a
 * `via` naming one of the tags (a grant's "via": ["tag:exit"] leaves other exit nodes out).
 */
export function internetKeysServedBy (keys: Iterable<string>, tags: readonly string[]): string[] {
  return [...keys].filter(k => (k === INTERNET_KEY || k.startsWith(`${INTERNET_KEY} via `)) && viaServes(k, tags))
}

/**
 * internetParts are an exit node's forward parts (`rule.destination>range`, as routeParts):
 * each rule destination `*` or one of `internetKeys` (internetKeysServedBy) lets its sources
 * reach the internet ranges of the families the node serves, and nothing else beyond the node.
 */
export function internetParts (families: ReadonlyArray<4 | 6>, internetKeys: readonly string[], dstRules: ReadonlyMap<string, ReadonlyArray<[number, number]>>): string[] {
  const parts: string[] = []
  for (const key of ['*', ...internetKeys]) {
    for (const [r, i] of dstRules.get(key) ?? []) {
      for (const f of families) for (const range of INTERNET_RANGES[f]) parts.push(`${r}.${i}>${range.text}`)
    }
  }
  return parts
}
