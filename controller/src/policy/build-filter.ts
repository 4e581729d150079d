import { protocolHasPorts, type FilterRule } from '@warren/protocol'
import { ALL_PORTS } from './parse.js'
import type { Cidr, PortRange } from './types.js'

/** FilterPart is what one rule contributes to a node's filter: sources, protocols, ports. */
export interface FilterPart {
  srcs: Iterable<Cidr>
  protos: readonly number[]
  ports: readonly PortRange[]
}

/** mergeRanges sorts port ranges and joins overlapping and adjacent ones (22, 23-25 -> 22-25). */
export function mergeRanges (ranges: readonly PortRange[]): PortRange[] {
  const sorted = [...ranges].sort((a, b) => a.first - b.first || a.last - b.last)
  const out: PortRange[] = []
  for (const r of sorted) {
    const last = out[out.length - 1]
    if (last !== undefined && r.first <= last.last + 1) last.last = Math.max(last.last, r.last)
    else out.push({ first: r.first, last: r.last })
  }
  return out
}

/**
 * SortedSources is a list of distinct sources sorted by sortKey, with their texts: filters
 * that list exactly these sources share the `texts` array instead of copying it.
 */
export type SortedSources = Cidr[] & { readonly texts: string[] }

/**
 * buildFilter merges what rules contribute into one canonical filter: for each source,
 * the ports allowed per protocol are merged; sources with the same protocols and ports
 * share one FilterRule. Sources, protocols, ports and rules are sorted, so the same
 * access always gives the same filter, whatever the rule order. Ports of protocols
 * without ports (ICMP, GRE, ...) become 0-65535, since they are ignored.
 */
export function buildFilter (parts: Iterable<FilterPart>): FilterRule[] {
  const partList = [...parts]
  // Parts that all list one shared SortedSources (a group named by many rules) give every
  // source the same permissions: its rules reuse the sorted texts, whatever the group's size.
  const shared = partList[0]?.srcs
  if (shared !== undefined && 'texts' in shared && partList.every(p => p.srcs === shared)) {
    const texts = (shared as SortedSources).texts
    if (texts.length === 0) return []
    return sortedRules([...permissionsOf(partList)].map(([key, g]) => [key, { ...g, srcs: texts }]))
  }
  // Sources that get the same parts get the same permissions: group them first, so
  // ports are merged once per distinct set of parts rather than once per source.
  const perSrc = new Map<string, { cidr: Cidr, parts: number[] }>()
  partList.forEach((part, pi) => {
    for (const cidr of part.srcs) {
      const entry = perSrc.get(cidr.text)
      if (entry === undefined) perSrc.set(cidr.text, { cidr, parts: [pi] })
      else if (entry.parts[entry.parts.length - 1] !== pi) entry.parts.push(pi)
    }
  })
  const byPartSet = new Map<string, Cidr[]>()
  for (const { cidr, parts: ps } of perSrc.values()) {
    const key = ps.join(',')
    const list = byPartSet.get(key)
    if (list === undefined) byPartSet.set(key, [cidr])
    else list.push(cidr)
  }
  const groups = new Map<string, { protos: number[], ports: PortRange[], srcs: Cidr[] }>()
  for (const [partSet, srcs] of byPartSet) {
    for (const [key, { protos, ports }] of permissionsOf(partSet.split(',').map(pi => partList[Number(pi)]!))) {
      const g = groups.get(key)
      if (g === undefined) groups.set(key, { protos, ports, srcs: [...srcs] })
      else for (const c of srcs) g.srcs.push(c)
    }
  }
  return sortedRules([...groups].map(([key, g]) => [key, {
    protos: g.protos,
    ports: g.ports,
    srcs: sortedTexts(g.srcs)
  }]))
}

/**
 * permissionsOf merges the ports the parts allow per protocol, and joins the protocols
 * with the same merged ports: `protos|ports` key -> sorted protocols and ports.
 */
function permissionsOf (parts: readonly FilterPart[]): Map<string, { protos: number[], ports: PortRange[] }> {
  const byProto = new Map<number, PortRange[]>()
  for (const part of parts) {
    for (const proto of part.protos) {
      const ports = protocolHasPorts(proto) ? part.ports : [ALL_PORTS]
      const have = byProto.get(proto)
      if (have === undefined) byProto.set(proto, [...ports])
      else have.push(...ports)
    }
  }
  const byRanges = new Map<string, { protos: number[], ports: PortRange[] }>()
  for (const [proto, ranges] of byProto) {
    const merged = mergeRanges(ranges)
    const key = merged.map(r => `${r.first}-${r.last}`).join(',')
    const g = byRanges.get(key)
    if (g === undefined) byRanges.set(key, { protos: [proto], ports: merged })
    else g.protos.push(proto)
  }
  const out = new Map<string, { protos: number[], ports: PortRange[] }>()
  for (const [rk, g] of byRanges) {
    g.protos.sort((a, b) => a - b)
    out.set(`${g.protos.join(',')}|${rk}`, g)
  }
  return out
}

/** sortedRules orders rules by their `protos|ports` key. */
function sortedRules (rules: Array<[string, FilterRule]>): FilterRule[] {
  return rules.sort(([a], [b]) => compareKeys(a, b)).map(([, r]) => r)
}

/**
 * sameFilter says whether two filters allow the same: rule by rule, the same sources,
 * protocols, ports, forward destinations and capabilities (shared source lists compare by reference first).
 * It compares every field of FilterRule: a field added there must be compared here too.
 */
export function sameFilter (a: readonly FilterRule[], b: readonly FilterRule[]): boolean {
  if (a === b) return true
  return a.length === b.length && a.every((r, i) => {
    const o = b[i]!
    return sameList(r.srcs, o.srcs) && sameList(r.protos, o.protos) && sameList(r.dsts ?? [], o.dsts ?? []) &&
      r.ports.length === o.ports.length && r.ports.every((p, j) => p.first === o.ports[j]!.first && p.last === o.ports[j]!.last) &&
      (r.caps === o.caps || JSON.stringify(r.caps) === JSON.stringify(o.caps))
  })
}

function sameList<T> (a: readonly T[], b: readonly T[]): boolean {
  return a === b || (a.length === b.length && a.every((x, i) => x === b[i]))
}

/** sortedTexts is ranges as filter text, in canonical order (family, address, length). */
export function sortedTexts (cidrs: Cidr[]): string[] {
  return cidrs.sort((a, b) => a.sortKey < b.sortKey ? -1 : a.sortKey > b.sortKey ? 1 : 0).map(c => c.text)
}

/** compareKeys orders `protos|ports` keys numerically, so 6 comes before 17. */
function compareKeys (a: string, b: string): number {
  const na = a.split(/[|,-]/).map(Number)
  const nb = b.split(/[|,-]/).map(Number)
  for (let i = 0; i < Math.min(na.length, nb.length); i++) if (na[i] !== nb[i]) return na[i]! - nb[i]!
  return na.length - nb.length || (a < b ? -1 : a > b ? 1 : 0)
}
