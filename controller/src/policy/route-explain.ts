import { cidrContains, hostCidr } from './addr.js'
import { destinationAllows, ruleAllows, type CompiledPolicy, type Subject } from './compile-policy.js'
import { routerRoutes } from './route-filter.js'
import type { PolicyNode } from './types.js'
import { viaServes } from './via.js'

/**
 * route-explain: where a flow to an address behind subnet routers goes. A destination that
 * is no node's own address is reached only through a router serving a route that holds it;
 * the policy's rules decide which of those routers forward the flow (with `via`, only
 * routers with one of its tags). explain adds this to its answer.
 */

/** RouteNote lists the routers serving a route that holds the destination, and whether each forwards the flow. */
export type RouteNote = Array<{ node: string, route: string, forwards: boolean }>

/** routeNote is undefined for a destination that is a node (or no address); otherwise it names the routers. */
export function routeNote (cp: CompiledPolicy, src: Subject, dst: Subject, proto: number, port: number, nodes: readonly PolicyNode[]): RouteNote | undefined {
  if (dst.addrs.length === 0) return undefined
  const nodeAddrs = new Set(nodes.flatMap(n => [hostCidr(n.ipv4).text, hostCidr(n.ipv6).text]))
  if (dst.addrs.some(a => nodeAddrs.has(a.text))) return undefined
  const rules = cp.rules.filter(r => ruleAllows(r, src, dst, proto, port))
  const note: RouteNote = []
  for (const n of nodes) {
    const route = routerRoutes(n).find(r => dst.addrs.every(a => cidrContains(r, a)))
    if (route === undefined) continue
    const forwards = rules.some(r => r.dsts.some(d => viaServes(d.key, n.tags) && destinationAllows(d, src, dst, proto, port)))
    note.push({ node: n.name, route: route.text, forwards })
  }
  return note
}

/** routeNoteText says it in one line for explain's message. */
export function routeNoteText (note: RouteNote, dstText: string): string {
  if (note.length === 0) return `no node serves a route to ${dstText}, so nothing carries the flow there`
  const list = (xs: RouteNote): string => xs.map(x => `${x.node} (${x.route})`).join(', ')
  const forwarding = note.filter(x => x.forwards)
  const idle = note.filter(x => !x.forwards)
  const through = forwarding.length === 0 ? `${dstText} is behind ${list(idle)}, and none forwards this flow` : `through subnet router ${list(forwarding)}`
  return forwarding.length > 0 && idle.length > 0 ? `${through}; not through ${list(idle)} (not named by the rule's via)` : through
}
