import type { Cidr } from './types.js'

/**
 * via: a grant's `"via": ["tag:router-a"]` sends the grant's address destinations (its
 * subnets) only through subnet routers with one of those tags. Such a destination gets a
 * selector key of its own, the range's key with the tags (`cidr:10.33.0.0/16 via
 * tag:router-a`), so the engine matches it like any range, except that a router serves
 * it (forwards it, and is a peer of its sources) only when it carries one of the tags.
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

/** routesServedBy lists the ranges (by key) that a router with these tags may serve: all but other routers' `via` ranges. */
export function routesServedBy (cidrs: ReadonlyMap<string, Cidr>, tags: readonly string[]): Map<string, Cidr> {
  const out = new Map<string, Cidr>()
  for (const [key, cidr] of cidrs) {
    const via = viaTagsOf(key)
    if (via === undefined || via.some(t => tags.includes(t))) out.set(key, cidr)
  }
  return out
}
