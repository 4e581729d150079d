/**
 * route-rules render what a subnet router adds to Warren's table: the forward filter for
 * traffic from the mesh into the subnets it serves, the masquerade of that traffic, and
 * the lock on interfaces whose forwarding Warren switched on.
 *
 * Packets that arrive on the mesh interface for a served subnet are judged in the forward
 * hook, every packet, against interval sets with the same discipline as the inbound filter
 * plus the destination: `route4` (source range . protocol . port range . destination
 * range) and `route4p` (source range . protocol . destination range) for protocols
 * without ports or rules for every port; IPv6 alike. A forbidden new flow is refused like
 * an inbound one (rate-limited ICMP admin-prohibited), anything else the filter forbids is
 * dropped. Replies from the subnets pass unjudged (only what arrives on the mesh is
 * judged) and record no flow state of this node's own. Any change here rebuilds the
 * table: served routes change seldom, and the rebuild is one atomic transaction.
 */
import { createHash } from 'node:crypto'
import { WarrenError, compareRoutes, parseIpPrefix, prefixContains, protocolHasPorts, type FilterRule, type IpPrefix } from '@warren/protocol'
import { formatAddrRange, parseSource } from './addresses.js'
import { rulePorts } from './ports.js'

/** RouteForwarding is what this node does as a subnet router (RouterContext of the firewall). */
export interface RouteForwarding {
  /** the subnet routes this node serves (canonical CIDRs) */
  routes: string[]
  /** masquerade what is forwarded into them (Tailscale's --snat-subnet-routes, on by default) */
  snat: boolean
  /** interfaces whose forwarding was switched on for the routes: what arrives on them is forwarded only into the mesh */
  lockedInterfaces: string[]
}

export const ROUTE_SET_NAMES = ['route4', 'route4p', 'route6', 'route6p'] as const
export type RouteSetName = typeof ROUTE_SET_NAMES[number]

/** CompiledRoutes is a router's part of the table: set elements, served ranges, and a digest that names it all. */
export interface CompiledRoutes {
  sets: Record<RouteSetName, string[]>
  served: { 4: string[], 6: string[] }
  snat: boolean
  lockedInterfaces: string[]
  /** digest changes whenever anything above does; the table carries it, so a read-back tells whether it holds this */
  digest: string
}

/** ROUTES_COMMENT_PREFIX starts the comment on the forward rule that carries the digest. */
export const ROUTES_COMMENT_PREFIX = 'warren routes '

const ALL_PORTS_RANGE = '0-65535'

/**
 * compileRoutes turns the forward rules of a filter (those with `dsts`) into set elements
 * for the routes this node serves. A destination outside every served route is left out
 * (the controller never sends one; a stale map might), so the router forwards only into
 * its own subnets. It throws WarrenError `bad_filter` on a malformed rule.
 */
export function compileRoutes (filter: readonly FilterRule[], fw: RouteForwarding | undefined): CompiledRoutes | undefined {
  if (fw === undefined || fw.routes.length === 0) return undefined
  const served = fw.routes.map(r => parseIpPrefix(r)).filter((p): p is IpPrefix => p !== undefined)
  const sets: Record<RouteSetName, Set<string>> = { route4: new Set(), route4p: new Set(), route6: new Set(), route6p: new Set() }
  filter.forEach((rule, i) => {
    for (const [d, dstText] of (rule.dsts ?? []).entries()) {
      const dst = parseIpPrefix(dstText)
      if (dst === undefined) throw new WarrenError('bad_filter', `filter[${i}].dsts[${d}]: "${dstText}" is not a CIDR`, { field: `filter[${i}].dsts[${d}]` })
      if (!served.some(s => prefixContains(s, dst))) continue
      const fam = dst.family === 6 ? '6' : '4'
      const ports = rulePorts(rule.ports, i).map(([a, b]) => a === b ? String(a) : `${a}-${b}`)
      for (const [k, s] of rule.srcs.entries()) {
        for (const src of parseSource(s, `filter[${i}].srcs[${k}]`)) {
          if (src.v6 !== (dst.family === 6)) continue
          const from = formatAddrRange(src.v6, src.lo, src.hi)
          for (const proto of rule.protos) {
            if (!protocolHasPorts(proto) || (ports.length === 1 && ports[0] === ALL_PORTS_RANGE)) sets[`route${fam}p`].add(`${from} . ${proto} . ${dstText}`)
            else for (const p of ports) sets[`route${fam}`].add(`${from} . ${proto} . ${p} . ${dstText}`)
          }
        }
      }
    }
  })
  const sorted = Object.fromEntries(ROUTE_SET_NAMES.map(n => [n, [...sets[n]].sort()])) as Record<RouteSetName, string[]>
  const routes = [...fw.routes].sort(compareRoutes)
  const out = {
    sets: sorted,
    served: { 4: routes.filter(r => !r.includes(':')), 6: routes.filter(r => r.includes(':')) },
    snat: fw.snat,
    lockedInterfaces: [...new Set(fw.lockedInterfaces)].sort()
  }
  return { ...out, digest: createHash('sha256').update(JSON.stringify(out)).digest('hex').slice(0, 16) }
}

const list = (items: readonly string[]): string => `{ ${items.join(', ')} }`

/** renderRouteSets renders the four forward sets. */
export function renderRouteSets (c: CompiledRoutes): string[] {
  return ROUTE_SET_NAMES.flatMap(name => {
    const addr = name.startsWith('route6') ? 'ipv6_addr' : 'ipv4_addr'
    const type = name.endsWith('p') ? `${addr} . inet_proto . ${addr}` : `${addr} . inet_proto . inet_service . ${addr}`
    return [`  set ${name} {`, `    type ${type}`, '    flags interval',
      ...(c.sets[name].length > 0 ? [`    elements = {\n      ${c.sets[name].join(',\n      ')}\n    }`] : []), '  }']
  })
}

/** renderRouteChains renders the chains that judge forwarded packets, and the masquerade when asked. */
export function renderRouteChains (c: CompiledRoutes, interfaceName: string): string[] {
  const lines: string[] = []
  for (const fam of ['4', '6'] as const) {
    const ip = fam === '4' ? 'ip' : 'ip6'
    const icmp = fam === '4' ? 'icmp' : 'icmpv6'
    const errors = fam === '4' ? 'destination-unreachable, time-exceeded, parameter-problem' : 'destination-unreachable, packet-too-big, time-exceeded, parameter-problem'
    lines.push(
      `  chain routed${fam} {`,
      fam === '4' ? '    ip frag-off & 0x1fff != 0 accept' : '    frag frag-off != 0 accept',
      `    ${icmp} type { ${errors} } accept`,
      `    ${ip} saddr . meta l4proto . th dport . ${ip} daddr @route${fam} accept`,
      `    ${ip} saddr . meta l4proto . ${ip} daddr @route${fam}p accept`,
      '    tcp flags & (fin | syn | rst | ack) == syn goto refuse',
      '    meta l4proto != tcp goto refuse',
      '    drop',
      '  }')
  }
  if (c.snat) {
    const masq = [['ip', c.served[4]], ['ip6', c.served[6]]].filter(([, r]) => r.length > 0)
      .map(([ip, r]) => `    iifname "${interfaceName}" ${String(ip)} daddr ${list(r as string[])} masquerade`)
    lines.push('  chain routesnat {', '    type nat hook postrouting priority srcnat - 10; policy accept;', ...masq, '  }')
  }
  return lines
}

/**
 * routeForwardRules are the forward hook's rules for a router, before the usual ones:
 * mesh traffic into a served subnet is judged by `routed4`/`routed6` (and goes no further),
 * replies from the subnets back into the mesh pass without recording flow state, and what
 * arrives on a locked interface may only go into the mesh.
 */
export function routeForwardRules (c: CompiledRoutes, interfaceName: string): string[] {
  const out: string[] = []
  const fams = [['ip', '4', c.served[4]], ['ip6', '6', c.served[6]]] as const
  let first = true
  for (const [ip, fam, served] of fams) {
    if (served.length === 0) continue
    // the first rule carries the digest, so a read-back tells which routes the table holds
    out.push(`    iifname "${interfaceName}" ${ip} daddr ${list(served)} jump routed${fam}${first ? ` comment "${ROUTES_COMMENT_PREFIX}${c.digest}"` : ''}`)
    first = false
  }
  for (const [ip, , served] of fams) if (served.length > 0) out.push(`    oifname "${interfaceName}" ${ip} saddr ${list(served)} accept`)
  if (c.lockedInterfaces.length > 0) out.push(`    iifname ${list(c.lockedInterfaces.map(i => `"${i}"`))} oifname != "${interfaceName}" drop`)
  return out
}
