import { formatIpAddress, isExitRoute, prefixRange, protocolHasPorts, protocolName, servedRoutes, type FilterRule, type IpPrefix, type RouteHolder } from '@warren/protocol'
import { ALL_PORTS, DEFAULT_TAILSCALE_PROTOS, canonical, prefix, type AccessSet, type Rect } from './access-set.js'
import type { TailscaleFilterRule } from './corpus.js'
import { hostCidr, parseCidr } from '../../src/policy/addr.js'
import { exitFamilies, INTERNET_RANGES, NOT_INTERNET, subtractPrefixes } from '../../src/policy/internet.js'

/**
 * The routed access set of a subnet router is what its filter lets through to hosts in
 * the subnets it serves, as tuples (source, destination, protocol, port). It extends the
 * access set (access-set.ts) with a destination axis: destinations are cut at every range
 * boundary, each piece holds the canonical text of its sources and ports, and equal
 * neighbours are joined, so two filters that forward the same packets read the same.
 *
 * Tailscale's filter is read inside the router's served subnet routes only (its own
 * addresses are the inbound access set); Warren's forward rules (`dsts`) are read whole,
 * so a forward outside the served routes shows up. An exit node forwards beyond its
 * subnets too: both filters are read inside autogroup:internet, and inside the rest
 * (exitSpans), apart, since there Warren knowingly forwards less than Tailscale's `*`.
 */

interface Span { first: bigint, last: bigint }
type FamilySpan = Span & { family: 4 | 6 }
interface Forward { family: 4 | 6, dst: Span, proto: number, rect: Rect }
/** ForwardRule is a filter rule of either dialect, read into prefixes. */
interface ForwardRule { srcs: IpPrefix[], protos: readonly number[], dsts: Array<{ net: IpPrefix, ports: { first: number, last: number } }> }

/** WHOLE is every address, for a filter read whole. */
const WHOLE: FamilySpan[] = ['0.0.0.0/0', '::/0'].flatMap(prefix).map(p => ({ family: p.family, ...prefixRange(p) }))

function spansOf (prefixes: ReadonlyArray<IpPrefix>): FamilySpan[] {
  return prefixes.map(p => ({ family: p.family, ...prefixRange(p) }))
}

/** subnetSpans are a router's served subnet routes (no exit routes), as address ranges. */
export function subnetSpans (node: RouteHolder): FamilySpan[] {
  return spansOf(servedRoutes(node).filter(r => !isExitRoute(r)).flatMap(prefix))
}

/**
 * exitSpans splits what an exit node forwards beyond its own addresses and subnet routes,
 * in the families whose default route it serves: `internet` is autogroup:internet,
 * `beyond` the rest (private ranges such as its LAN, the mesh's ranges, ...). Undefined
 * for a node that is no exit node.
 */
export function exitSpans (node: RouteHolder & { ipv4: string, ipv6: string }): { internet: FamilySpan[], beyond: FamilySpan[] } | undefined {
  const families = exitFamilies(node)
  if (families.length === 0) return undefined
  const holes = [hostCidr(node.ipv4), hostCidr(node.ipv6), ...servedRoutes(node).filter(r => !isExitRoute(r)).map(r => parseCidr(r)!)]
  const notInternet = NOT_INTERNET.map(r => parseCidr(r)!).filter(c => families.includes(c.family))
  return { internet: spansOf(families.flatMap(f => INTERNET_RANGES[f])), beyond: spansOf(notInternet.flatMap(c => subtractPrefixes(c, holes))) }
}

function rect (src: Span, ports: { first: number, last: number }, proto: number): Rect {
  const p = protocolHasPorts(proto) ? ports : ALL_PORTS
  return { srcFirst: src.first, srcLast: src.last, portFirst: p.first, portLast: p.last }
}

/** clipped are the rules' forwards to destinations inside `spans`, each destination cut to the span. */
function clipped (rules: readonly ForwardRule[], spans: readonly FamilySpan[]): Forward[] {
  const forwards: Forward[] = []
  for (const rule of rules) {
    for (const { net, ports } of rule.dsts) {
      const range = prefixRange(net)
      for (const s of spans) {
        if (s.family !== net.family || s.last < range.first || s.first > range.last) continue
        const dst = { first: range.first > s.first ? range.first : s.first, last: range.last < s.last ? range.last : s.last }
        for (const proto of rule.protos) {
          for (const src of rule.srcs) if (src.family === net.family) forwards.push({ family: net.family, dst, proto, rect: rect(prefixRange(src), ports, proto) })
        }
      }
    }
  }
  return forwards
}

function tailscaleRules (filter: readonly TailscaleFilterRule[]): ForwardRule[] {
  return filter.map(rule => ({
    srcs: (rule.Srcs ?? []).flatMap(prefix),
    protos: rule.IPProto === null || rule.IPProto.length === 0 ? DEFAULT_TAILSCALE_PROTOS : rule.IPProto,
    dsts: (rule.Dsts ?? []).flatMap(d => prefix(d.Net).map(net => ({ net, ports: { first: d.Ports.First, last: d.Ports.Last } })))
  }))
}

function warrenRules (filter: readonly FilterRule[]): ForwardRule[] {
  return filter.map(rule => ({
    srcs: rule.srcs.flatMap(prefix),
    protos: rule.protos,
    dsts: (rule.dsts ?? []).flatMap(d => prefix(d).flatMap(net => rule.ports.map(ports => ({ net, ports }))))
  }))
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
  return build(clipped(tailscaleRules(filter), subnetSpans(router)))
}

/**
 * warrenRoutedAccess reads a Warren filter's forward rules (those with `dsts`) whole, so a
 * forward outside the served routes shows up; on an exit node, inside its subnet routes
 * only (its other forwards are compared by exitSpans).
 */
export function warrenRoutedAccess (filter: readonly FilterRule[], router?: RouteHolder): AccessSet {
  const exit = router !== undefined && servedRoutes(router).some(isExitRoute)
  return build(clipped(warrenRules(filter), exit ? subnetSpans(router) : WHOLE))
}

/** tailscaleAccessWithin reads what a Tailscale filter forwards to destinations inside `spans` (as exitSpans gives). */
export function tailscaleAccessWithin (filter: readonly TailscaleFilterRule[], spans: readonly FamilySpan[]): AccessSet {
  return build(clipped(tailscaleRules(filter), spans))
}

/** warrenAccessWithin reads what a Warren filter forwards to destinations inside `spans`. */
export function warrenAccessWithin (filter: readonly FilterRule[], spans: readonly FamilySpan[]): AccessSet {
  return build(clipped(warrenRules(filter), spans))
}
