import type { CapMap, FilterRule } from '@warren/protocol'
import { sortedTexts } from './build-filter.js'
import type { Cidr } from './types.js'

/** CapPart is what one grant with `app` gives a node: its sources, and the capabilities, by the grant's rule number. */
export interface CapPart {
  rule: number
  srcs: Iterable<Cidr>
  caps: CapMap
}

/**
 * buildCapFilter turns the capability grants that reach a node into its capability rules
 * (filter rules with `caps`, which let no traffic in): one per grant, in policy order,
 * since the order of a capability's values is the order of the grants that give them.
 * A grant that reaches the node through several destinations gives its values once, to
 * the union of their sources; a grant with no sources left gives nothing.
 */
export function buildCapFilter (parts: Iterable<CapPart>): FilterRule[] {
  const byRule = new Map<number, { caps: CapMap, srcs: Map<string, Cidr> }>()
  for (const part of parts) {
    let entry = byRule.get(part.rule)
    if (entry === undefined) { entry = { caps: part.caps, srcs: new Map() }; byRule.set(part.rule, entry) }
    for (const c of part.srcs) entry.srcs.set(c.text, c)
  }
  return [...byRule.entries()]
    .filter(([, e]) => e.srcs.size > 0)
    .sort(([a], [b]) => a - b)
    .map(([, e]) => ({
      srcs: sortedTexts([...e.srcs.values()]),
      protos: [],
      ports: [],
      caps: e.caps
    }))
}
