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
 * buildFilter merges what rules contribute into one canonical filter: for each source,
 * the ports allowed per protocol are merged; sources with the same protocols and ports
 * share one FilterRule. Sources, protocols, ports and rules are sorted, so the same
 * access always gives the same filter, whatever the rule order. Ports of protocols
 * without ports (ICMP, GRE, ...) become 0-65535, since they are ignored.
 */
export function buildFilter (parts: Iterable<FilterPart>): FilterRule[] {
  // Sources that get the same parts get the same permissions: group them first, so
  // ports are merged once per distinct set of parts rather than once per source.
  const partList = [...parts]
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
    const byProto = new Map<number, PortRange[]>()
    for (const pi of partSet.split(',')) {
      const part = partList[Number(pi)]!
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
    for (const [rk, { protos, ports }] of byRanges) {
      protos.sort((a, b) => a - b)
      const key = `${protos.join(',')}|${rk}`
      const g = groups.get(key)
      if (g === undefined) groups.set(key, { protos, ports, srcs: [...srcs] })
      else for (const c of srcs) g.srcs.push(c)
    }
  }
  return [...groups.entries()]
    .sort(([a], [b]) => compareKeys(a, b))
    .map(([, g]) => ({
      srcs: sortedTexts(g.srcs),
      protos: g.protos,
      ports: g.ports
    }))
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
