import { WarrenError } from './errors.js'
import { formatIpPrefix, parseIpPrefix, prefixContains, type IpPrefix } from './ip.js'
import { MESH_IPV4_CIDR } from './names.js'

/**
 * Subnet routes: address ranges that a node (a subnet router) forwards into, for hosts that
 * run no Warren. A router advertises them, an admin or the policy's autoApprovers approves
 * them, and peers that accept routes send traffic for them through the router. The meanings
 * that controller, daemon and CLI share live here.
 */

/** MAX_ROUTES bounds the routes one node may advertise. */
export const MAX_ROUTES = 256

/** EXIT_ROUTES are the default routes, which only an exit node serves. */
export const EXIT_ROUTES: readonly string[] = ['0.0.0.0/0', '::/0']

/** isExitRoute says whether a (normalized) route is a default route. */
export function isExitRoute (route: string): boolean {
  return EXIT_ROUTES.includes(route)
}

/** offersExitNode says whether a list of routes holds both default routes: what makes an exit node. */
export function offersExitNode (routes: readonly string[]): boolean {
  return EXIT_ROUTES.every(r => routes.includes(r))
}

const RESERVED: ReadonlyArray<{ prefix: IpPrefix, what: string }> = ([
  { text: MESH_IPV4_CIDR, what: 'the mesh\'s own IPv4 range' },
  { text: '127.0.0.0/8', what: 'loopback' },
  { text: '169.254.0.0/16', what: 'link-local' },
  { text: '224.0.0.0/4', what: 'multicast' },
  { text: '::1/128', what: 'loopback' },
  { text: 'fe80::/10', what: 'link-local' },
  { text: 'ff00::/8', what: 'multicast' }
]).map(r => ({ prefix: parseIpPrefix(r.text)!, what: r.what }))

function overlaps (a: IpPrefix, b: IpPrefix): boolean {
  return prefixContains(a, b) || prefixContains(b, a)
}

/**
 * checkRoute reads one advertised route (`192.168.1.0/24`, `fd00:1::/64`, or an exit node's
 * `0.0.0.0/0` / `::/0`) and returns it in canonical form. It refuses, saying how to fix it:
 * text that is not a CIDR, host bits set below the length, a bare address, and ranges
 * other than the default routes that overlap the mesh itself (100.64.0.0/10, the mesh's IPv6 /48 `meshIpv6` when
 * known), loopback, link-local or multicast.
 */
export function checkRoute (text: string, field = 'routes', meshIpv6?: string): string {
  const bad = (why: string): WarrenError => new WarrenError('bad_route', `route "${text}" ${why}`, { field })
  if (!text.includes('/')) throw bad(`has no prefix length: write a subnet such as ${text.includes(':') ? `${text}/128` : `${text}/32`}`)
  const p = parseIpPrefix(text)
  if (p === undefined) throw bad('is not an IPv4 or IPv6 CIDR: write it like 192.168.1.0/24 or fd00:1::/64')
  const canonical = formatIpPrefix(p)
  if (parseIpPrefix(text, { strict: true }) === undefined) throw bad(`has host bits set: did you mean ${canonical}?`)
  if (p.length === 0) return canonical
  const mesh = meshIpv6 === undefined ? undefined : parseIpPrefix(meshIpv6.includes('/') ? meshIpv6 : `${meshIpv6}/48`)
  const reserved = [...RESERVED, ...(mesh !== undefined ? [{ prefix: mesh, what: 'the mesh\'s own IPv6 range' }] : [])]
  for (const r of reserved) {
    if (overlaps(r.prefix, p)) throw bad(`overlaps ${r.what} (${formatIpPrefix(r.prefix)}): advertise only subnets behind this node`)
  }
  return canonical
}

/**
 * checkRoutes reads a list of routes with checkRoute and returns them canonical, without
 * repeats, sorted (IPv4 first); it refuses more than MAX_ROUTES, and one default route
 * without the other (an exit node carries both families, as in Tailscale).
 */
export function checkRoutes (routes: readonly string[], field = 'routes', meshIpv6?: string): string[] {
  if (routes.length > MAX_ROUTES) throw new WarrenError('bad_route', `${routes.length} routes are too many: at most ${MAX_ROUTES}`, { field })
  const out = new Set(routes.map((r, i) => checkRoute(r, `${field}[${i}]`, meshIpv6)))
  const exit = EXIT_ROUTES.filter(r => out.has(r))
  if (exit.length === 1) {
    throw new WarrenError('bad_route', `route "${exit[0]!}" is a default route, half of an exit node: give 0.0.0.0/0 and ::/0 together (warren up --advertise-exit-node), or advertise the subnets themselves`, { field })
  }
  return [...out].sort(compareRoutes)
}

/** compareRoutes orders canonical routes: IPv4 first, then by address, then by length. */
export function compareRoutes (a: string, b: string): number {
  const pa = parseIpPrefix(a)!
  const pb = parseIpPrefix(b)!
  return pa.family - pb.family || (pa.network < pb.network ? -1 : pa.network > pb.network ? 1 : pa.length - pb.length)
}

/**
 * RouteHolder is a node as far as routes go: what it advertises and what was approved (by
 * an admin, or by the policy's autoApprovers when it advertised them).
 */
export interface RouteHolder {
  advertisedRoutes?: readonly string[]
  approvedRoutes?: readonly string[]
}

/** servedRoutes are the routes a node advertises that are approved: the ones peers may use. */
export function servedRoutes (n: RouteHolder): string[] {
  const approved = new Set(n.approvedRoutes ?? [])
  return (n.advertisedRoutes ?? []).filter(r => approved.has(r))
}
