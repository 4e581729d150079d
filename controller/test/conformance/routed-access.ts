import { formatIpAddress, isExitRoute, prefixRange, protocolHasPorts, protocolName, servedRoutes, type FilterRule, type RouteHolder } from '@warren/protocol'
import { ALL_PORTS, DEFAULT_TAILSCALE_PROTOS, canonical, prefix, type AccessSet, type Rect } from './access-set.js'
import type { TailscaleFilterRule } from './corpus.js'

/**
 * The routed access set of a subnet router is what its filter lets through to hosts in
 * the subnets it serves, as tuples (source, destination, protocol, port). It extends the
 * access set (access-set.ts) with a destination axis: destinations are cut at every range
 * boundary, each piece holds the canonical text of its sources and ports, and equal
 * neighbours are joined, so two filters that forward the same packets read the same.
 *
 * Tailscale's filter is read inside the router's served subnet routes only (its own
 * addresses are the inbound access set, exit traffic is an exit node's); Warren's forward
 * rules (`dsts`) are read whole, so a forward outside the served routes shows up.
 */

interface Span { first: bigint, last: bigint }
interface Forward { family: 4 | 6, dst: Span, proto: number, rect: Rect }

/** subnetSpans are a router's served subnet routes (no exit routes), as address ranges. */
export function subnetSpans (node: RouteHolder): Array<Span & { family: 4 | 6 }> {
  return servedRoutes(node).filter(r => !isExitRoute(r)).flatMap(prefix).map(p => ({ family: p.family, ...prefixRange(p) }))
}

function rect (src: Span, ports: { first: number, last: number }, proto: number): Rect {
  const p = protocolHasPorts(proto) ? ports : ALL_PORTS
  return { srcFirst: src.first, srcLast: src.last, portFirst: p.first, portLast: p.last }
}

/** build turns forwards into the canonical routed access set: `dstFirst-dstLast proto` -> sources and ports. */
function build (forwards: readonly Forward[]): AccessSet {
  const groups = new Map<string, Forward[]>()
  for (const f of forwards) {
    const key = `${f.family} ${f.proto}`
    const list = groups.get(key)
    if (list === undefined) groups.set(key, [f])
    else list.push(f)
  }
  const out: AccessSet = new Map()
  for (const list of groups.values()) {
    const { family, proto } = list[0]!
    const cuts = [...new Set(list.flatMap(f => [f.dst.first, f.dst.last + 1n]))].sort((a, b) => a < b ? -1 : a > b ? 1 : 0)
    const pieces: Array<Span & { text: string }> = []
    for (let i = 0; i + 1 < cuts.length; i++) {
      const first = cuts[i]!
      const last = cuts[i + 1]! - 1n
      const text = canonical(family, list.filter(f => f.dst.first <= first && f.dst.last >= last).map(f => f.rect))
      if (text === '') continue
      const prev = pieces[pieces.length - 1]
      if (prev !== undefined && prev.last + 1n === first && prev.text === text) prev.last = last
      else pieces.push({ first, last, text })
    }
    for (const p of pieces) out.set(`${formatIpAddress(family, p.first)}-${formatIpAddress(family, p.last)} ${protocolName(proto)}`, p.text)
  }
  return new Map([...out].sort(([a], [b]) => a < b ? -1 : 1))
}

/** tailscaleRoutedAccess reads what a Tailscale filter forwards into the router's served subnets. */
export function tailscaleRoutedAccess (filter: readonly TailscaleFilterRule[], router: RouteHolder): AccessSet {
  const subnets = subnetSpans(router)
  const forwards: Forward[] = []
  for (const rule of filter) {
    const srcs = (rule.Srcs ?? []).flatMap(prefix)
    const protos = rule.IPProto === null || rule.IPProto.length === 0 ? DEFAULT_TAILSCALE_PROTOS : rule.IPProto
    for (const d of rule.Dsts ?? []) {
      for (const net of prefix(d.Net)) {
        const range = prefixRange(net)
        for (const s of subnets) {
          if (s.family !== net.family || s.last < range.first || s.first > range.last) continue
          const dst = { first: range.first > s.first ? range.first : s.first, last: range.last < s.last ? range.last : s.last }
          for (const proto of protos) {
            for (const src of srcs) {
              if (src.family === net.family) forwards.push({ family: net.family, dst, proto, rect: rect(prefixRange(src), { first: d.Ports.First, last: d.Ports.Last }, proto) })
            }
          }
        }
      }
    }
  }
  return build(forwards)
}

/**
 * warrenRoutedAccess reads a Warren filter's forward rules (those with `dsts`). On an exit
 * node, the forwards to the internet (autogroup:internet, outside every served subnet) are
 * Warren's own: Tailscale compiles nothing into its filters for them, so they are left out.
 */
export function warrenRoutedAccess (filter: readonly FilterRule[], router?: RouteHolder): AccessSet {
  const exit = router !== undefined && servedRoutes(router).some(isExitRoute)
  const subnets = router === undefined ? [] : subnetSpans(router)
  const inSubnet = (net: ReturnType<typeof prefix>[number]): boolean => {
    const r = prefixRange(net)
    return subnets.some(s => s.family === net.family && s.first <= r.last && s.last >= r.first)
  }
  const forwards: Forward[] = []
  for (const rule of filter) {
    for (const d of rule.dsts ?? []) {
      for (const net of prefix(d)) {
        if (exit && !inSubnet(net)) continue
        for (const proto of rule.protos) {
          for (const s of rule.srcs.flatMap(prefix)) {
            if (s.family !== net.family) continue
            for (const p of rule.ports) forwards.push({ family: net.family, dst: prefixRange(net), proto, rect: rect(prefixRange(s), p, proto) })
          }
        }
      }
    }
  }
  return build(forwards)
}

/**
 * reachesExitTraffic says whether a Tailscale filter lets traffic through the node as an
 * exit node: the node serves an exit route and a destination lies outside its own
 * addresses and its subnet routes. Exit traffic is judged with exit nodes, not here.
 */
export function reachesExitTraffic (filter: readonly TailscaleFilterRule[], nodeIps: readonly string[], router: RouteHolder): boolean {
  if (!servedRoutes(router).some(isExitRoute)) return false
  const inside = [...nodeIps.flatMap(prefix).map(p => ({ family: p.family, ...prefixRange(p) })), ...subnetSpans(router)]
  return filter.some(rule => (rule.Dsts ?? []).some(d => prefix(d.Net).some(net => {
    const r = prefixRange(net)
    return !inside.some(s => s.family === net.family && s.first <= r.first && s.last >= r.last)
  })))
}
