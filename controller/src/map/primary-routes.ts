import { isExitRoute, servedRoutes, type Node, type RouteHolder } from '@warren/protocol'

/** RouterPresence is what the choice looks at: a node's routes and whether it is online. */
export type RouterPresence = Pick<Node, 'id' | 'online'> & RouteHolder

/**
 * PrimaryRoutes choose, for each subnet route several routers serve, the one that carries
 * it (its primary), as Tailscale does: the primary keeps the route while it is online; when
 * it goes offline, the online router with the lowest node id takes over; a router that
 * comes back does not take the route back. A route no online router serves has no primary.
 */
export interface PrimaryRoutes {
  /** update records a node's served routes and presence; returns the ids of nodes whose primary routes changed */
  update: (n: RouterPresence) => Set<string>
  /** remove forgets a node; returns the ids of nodes whose primary routes changed */
  remove: (id: string) => Set<string>
  /** primaryOf lists the routes a node is primary for, in the order it serves them */
  primaryOf: (id: string) => string[]
}

interface Router { routes: string[], online: boolean }

/** createPrimaryRoutes keeps the primaries in memory; they follow the nodes' presence, not the store. */
export function createPrimaryRoutes (): PrimaryRoutes {
  const routers = new Map<string, Router>()
  const servers = new Map<string, Set<string>>()
  const primary = new Map<string, string>()

  /** elect keeps an online primary and otherwise picks the online server with the lowest id. */
  function elect (route: string, changed: Set<string>): void {
    const cur = primary.get(route)
    if (cur !== undefined && routers.get(cur)?.online === true && servers.get(route)?.has(cur) === true) return
    let next: string | undefined
    for (const id of servers.get(route) ?? []) {
      if (routers.get(id)?.online === true && (next === undefined || id < next)) next = id
    }
    if (next === cur) return
    if (cur !== undefined) changed.add(cur)
    if (next === undefined) primary.delete(route)
    else {
      primary.set(route, next)
      changed.add(next)
    }
  }

  function set (id: string, next: Router | undefined): Set<string> {
    const before = routers.get(id)?.routes ?? []
    for (const r of before) servers.get(r)?.delete(id)
    if (next === undefined) routers.delete(id)
    else {
      routers.set(id, next)
      for (const r of next.routes) {
        let s = servers.get(r)
        if (s === undefined) servers.set(r, s = new Set())
        s.add(id)
      }
    }
    const changed = new Set<string>()
    for (const r of new Set([...before, ...(next?.routes ?? [])])) {
      elect(r, changed)
      if (servers.get(r)?.size === 0) servers.delete(r)
    }
    return changed
  }

  return {
    update: n => {
      const routes = servedRoutes(n).filter(r => !isExitRoute(r))
      return set(n.id, routes.length > 0 ? { routes, online: n.online } : undefined)
    },
    remove: id => set(id, undefined),
    primaryOf: id => (routers.get(id)?.routes ?? []).filter(r => primary.get(r) === id)
  }
}
