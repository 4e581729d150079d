import { compareRoutes, isExitRoute, servedRoutes, type FilterRule, type RouteHolder } from '@warren/protocol'
import { cidrContains, parseCidr } from './addr.js'
import { buildFilter, type FilterPart } from './build-filter.js'
import type { Cidr } from './types.js'

/**
 * route-filter: what a subnet router enforces. A rule destination reaches into a router's
 * served routes when it is `*` (every route, as in Tailscale) or a range (a CIDR or a host
 * alias) that overlaps one; the router then forwards the rule's sources to the narrower of
 * the two ranges, and to nothing else. The engine keeps these as parts of a node's filter
 * signature (`r.i>range`), so they are shared, cached and invalidated like inbound parts.
 */

/** routerRoutes are the subnet routes a node serves, parsed; exit routes (0.0.0.0/0, ::/0) are not subnets. */
export function routerRoutes (node: RouteHolder): Cidr[] {
  return servedRoutes(node).filter(r => !isExitRoute(r)).map(r => parseCidr(r)).filter((c): c is Cidr => c !== undefined)
}

/** routeOverlaps says whether two ranges share addresses (with prefixes: one holds the other). */
export function routeOverlaps (a: Cidr, b: Cidr): boolean {
  return cidrContains(a, b) || cidrContains(b, a)
}

/**
 * routeParts lists the signature parts of a router: for each rule destination (`[rule,
 * destination]` by key) that reaches into one of its routes, `rule.destination>range`.
 */
export function routeParts (routes: readonly Cidr[], cidrs: ReadonlyMap<string, Cidr>, dstRules: ReadonlyMap<string, ReadonlyArray<[number, number]>>): string[] {
  const parts: string[] = []
  for (const [r, i] of dstRules.get('*') ?? []) for (const route of routes) parts.push(`${r}.${i}>${route.text}`)
  for (const [key, cidr] of cidrs) {
    const uses = dstRules.get(key)
    if (uses === undefined) continue
    for (const route of routes) {
      if (!routeOverlaps(route, cidr)) continue
      const narrower = cidrContains(route, cidr) ? cidr : route
      for (const [r, i] of uses) parts.push(`${r}.${i}>${narrower.text}`)
    }
  }
  return parts
}

/**
 * buildForwardFilter turns forward parts into filter rules with `dsts`: one canonical
 * filter (buildFilter) per destination range, ranges in address order.
 */
export function buildForwardFilter (parts: ReadonlyArray<{ via: string, part: FilterPart }>): FilterRule[] {
  const byVia = new Map<string, FilterPart[]>()
  for (const { via, part } of parts) {
    const list = byVia.get(via)
    if (list === undefined) byVia.set(via, [part])
    else list.push(part)
  }
  return [...byVia.keys()].sort(compareRoutes).flatMap(via => buildFilter(byVia.get(via)!).map(rule => ({ ...rule, dsts: [via] })))
}
