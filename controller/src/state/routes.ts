import { checkRoutes, compareRoutes, servedRoutes, type Node, type NodeRoutes } from '@warren/protocol'
import type { NodeRecord } from '../store.js'
import type { CommitCore, Deferred } from './commit-core.js'
import type { NodeTable } from './node-table.js'

/**
 * RouteMethods keep a node's subnet routes: what it advertises (from its map hello) and
 * what is approved for it (by an admin, or by the policy's autoApprovers). Both are stored
 * with the node, so a change is a node change: the map service sends it to the node's
 * peers and recompiles the router's forward filter.
 */
export interface RouteMethods {
  /** nodeRoutes is `warren admin nodes routes NODE` */
  nodeRoutes: (idOrName: string) => NodeRoutes
  /** approveRoutes sets the routes approved for a node to exactly `routes` (checked, canonical) */
  approveRoutes: (idOrName: string, routes: string[], actor: string) => Promise<Node>
  /**
   * advertiseRoutes records the routes a node's map hello says it advertises, and approves at
   * once those the policy's autoApprovers approve. Approvals of routes it stops advertising
   * are kept, so advertising them again needs no new approval.
   */
  advertiseRoutes: (id: string, routes: string[]) => Promise<Node | undefined>
  /** applyAutoApprovers approves, on every node, the advertised routes the policy in force approves (after a policy change) */
  applyAutoApprovers: () => Promise<void>
}

/** AutoApprove lists the routes of a node that the policy's autoApprovers approve. */
export type AutoApprove = (node: Node) => string[]

const sameList = (a: readonly string[] | undefined, b: readonly string[] | undefined): boolean => (a ?? []).join(' ') === (b ?? []).join(' ')

const AUTO_ACTOR = 'policy:autoApprovers'

export function createRouteMethods (core: CommitCore, table: NodeTable, autoApprove: AutoApprove): RouteMethods {
  const { store, locked, auditOp } = core

  /** withAutoApproved adds what autoApprovers approve to a record's approved routes; undefined when nothing new. */
  function withAutoApproved (n: NodeRecord): { next: NodeRecord, added: string[] } | undefined {
    const approved = new Set(n.approvedRoutes ?? [])
    const added = autoApprove(table.view(n)).filter(r => !approved.has(r))
    if (added.length === 0) return undefined
    return { next: { ...n, approvedRoutes: [...approved, ...added].sort(compareRoutes) }, added }
  }

  const autoApproveOne = locked((id: string): Deferred<Node | undefined> => {
    const n = store.nodes.get(id)
    const change = n === undefined ? undefined : withAutoApproved(n)
    if (n === undefined || change === undefined) return core.unchanged(n === undefined ? undefined : table.view(n))
    return table.save(change.next, [auditOp(AUTO_ACTOR, 'node.routes.approve', n.name, { node: n.id, routes: change.added })])
  })

  return {
    nodeRoutes (idOrName) {
      const n = table.view(table.require(idOrName))
      return { node: n.name, advertised: n.advertisedRoutes ?? [], approved: n.approvedRoutes ?? [], served: servedRoutes(n) }
    },
    approveRoutes: locked((idOrName: string, routes: string[], actor: string) => {
      const n = table.require(idOrName)
      const approved = checkRoutes(routes, 'routes', store.meta.ulaPrefix)
      if (sameList(approved, n.approvedRoutes)) return core.unchanged(table.view(n))
      return table.save({ ...n, approvedRoutes: approved }, [auditOp(actor, 'node.routes.approve', n.name, { node: n.id, routes: approved, before: n.approvedRoutes ?? [] })])
    }),
    async advertiseRoutes (id, routes) {
      const changed = await locked((): Deferred<Node | undefined> => {
        const n = store.nodes.get(id)
        if (n === undefined || sameList(routes, n.advertisedRoutes)) return core.unchanged(undefined)
        return table.save({ ...n, advertisedRoutes: routes }, [auditOp(`node:${n.id}`, 'node.routes.advertise', n.name, { node: n.id, routes })])
      })()
      const approved = await autoApproveOne(id)
      return approved ?? changed
    },
    async applyAutoApprovers () {
      for (const n of [...store.nodes.values()]) if ((n.advertisedRoutes ?? []).length > 0) await autoApproveOne(n.id)
    }
  }
}
