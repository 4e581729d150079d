import { compareRoutes, isExitRoute, servedRoutes, type FilterRule, type Netmap, type Peer, type RoutingPrefs } from '@warren/protocol'

/**
 * subnet-routes decide, from a netmap and this node's route settings, which subnet routes
 * the node sends through which peer (as a client) and which it serves (as a router).
 */

/** NO_ROUTING is a node that neither advertises nor accepts routes. */
export const NO_ROUTING: RoutingPrefs = { advertiseRoutes: [], acceptRoutes: false, snatSubnetRoutes: true }

/**
 * routesInUse maps each peer's WireGuard key to the routes this node sends through it:
 * with `acceptRoutes` only, the peers' approved routes, except those this node advertises
 * itself (its own subnet is reached directly). Where two peers offer the same range, one
 * carries it: the one the controller names primary for it, else an online one, then the
 * lowest node id, so every node picks the same.
 * Overlapping ranges of different lengths all stay: the kernel's longest-prefix match (in
 * the routing table and in WireGuard's allowed-ips) sends each packet to the most specific.
 */
export function routesInUse (peers: readonly Peer[], routing: RoutingPrefs): Map<string, string[]> {
  const out = new Map<string, string[]>()
  if (!routing.acceptRoutes) return out
  const own = new Set(routing.advertiseRoutes)
  const holder = new Map<string, Peer>()
  for (const p of peers) {
    for (const r of p.routes ?? []) {
      if (own.has(r) || isExitRoute(r)) continue
      const cur = holder.get(r)
      if (cur === undefined || better(p, cur, r)) holder.set(r, p)
    }
  }
  for (const [route, p] of holder) {
    const list = out.get(p.wgKey)
    if (list === undefined) out.set(p.wgKey, [route])
    else list.push(route)
  }
  for (const list of out.values()) list.sort(compareRoutes)
  return out
}

function better (a: Peer, b: Peer, route: string): boolean {
  const primaryA = a.primaryRoutes?.includes(route) === true
  if (primaryA !== (b.primaryRoutes?.includes(route) === true)) return primaryA
  if (a.online !== b.online) return a.online
  return a.id < b.id
}

/**
 * selfRoutes are the routes this node serves: approved by the controller and still
 * advertised by its settings; an exit node's default routes among them.
 */
export function selfRoutes (netmap: Netmap, routing: RoutingPrefs): string[] {
  const advertised = new Set(routing.advertiseRoutes)
  return servedRoutes(netmap.self).filter(r => advertised.has(r))
}

/**
 * splitFilter separates the inbound filter from a router's forward rules (those with
 * `dsts`); capability rules (with `caps`) let no traffic in, so neither firewall gets them.
 */
export function splitFilter (filter: readonly FilterRule[]): { inbound: FilterRule[], forward: FilterRule[] } {
  const inbound: FilterRule[] = []
  const forward: FilterRule[] = []
  for (const r of filter) if (r.caps === undefined) (r.dsts === undefined ? inbound : forward).push(r)
  return { inbound, forward }
}
