import type { Cidr } from './types.js'

/**
 * via: a grant's `"via": ["tag:router-a"]` sends the grant's address destinations (its
 * subnets) only through subnet routers with one of those tags, and its autogroup:internet
 * only through exit nodes with one of them. Such a destination gets a selector key of its
 * own, the plain key with the tags (`cidr:10.33.0.0/16 via tag:router-a`, `ag:internet via
 * tag:exit`), so the engine matches it like the plain key, except that a router or exit
 * node serves it (forwards it, and is a peer of its sources) only when it carries one of
 * the tags.
 */

/** viaKey is the selector key of a range destination of a grant with `via`. */
export function viaKey (rangeKey: string, via: readonly string[]): string {
  return `${rangeKey} via ${[...via].sort().join(',')}`
}

/** viaTagsOf reads the tags back out of a key; undefined for a key without `via`. */
export function viaTagsOf (key: string): string[] | undefined {
  const at = key.indexOf(' via ')
  return at < 0 ? undefined : key.slice(at + 5).split(',')
}

/** viaServes: may a router or exit node with these tags serve the destination with this key (always, for a key without `via`)? */
export function viaServes (key: string, tags: readonly string[]): boolean {
  const via = viaTagsOf(key)
  return via === undefined || via.some(t => tags.includes(t))
}

/** routesServedBy lists the ranges (by key) that a router with these tags may serve: all but other routers' `via` ranges. */
export function routesServedBy (cidrs: ReadonlyMap<string, Cidr>, tags: readonly string[]): Map<string, Cidr> {
  const out = new Map<string, Cidr>()
  for (const [key, cidr] of cidrs) if (viaServes(key, tags)) out.set(key, cidr)
  return out
}
