/**
 * rule-align compares the rules of a new filter with those of the previous compile, so an
 * incremental compile looks again only at rules that were added or dropped (alignRules)
 * and, in a rule that only gained or lost sources, only at those sources (editedRule).
 */
import type { FilterRule } from '@warren/protocol'
import type { AddrRange } from './addresses.js'
import type { KeptRule, ParsedRule, SourceParser } from './element-compile.js'

/**
 * sameRule says whether a rule is written exactly as a kept one. It allocates nothing: it
 * runs on every rule of every filter, which arrives as a fresh copy each time.
 */
function sameRule (r: FilterRule, k: KeptRule): boolean {
  const { srcs, protos, ports } = r
  if (!Array.isArray(srcs) || !Array.isArray(protos) || !Array.isArray(ports)) return false
  if (srcs.length !== k.srcs.length || protos.length !== k.protos.length || ports.length * 2 !== k.ports.length) return false
  for (let i = 0; i < protos.length; i++) if (protos[i] !== k.protos[i]) return false
  for (let i = 0; i < ports.length; i++) {
    const p = ports[i]
    if (typeof p !== 'object' || p === null || p.first !== k.ports[2 * i] || p.last !== k.ports[2 * i + 1]) return false
  }
  for (let i = 0; i < srcs.length; i++) if (srcs[i] !== k.srcs[i]) return false
  return true
}

/** RESYNC_WINDOW: how far apart in the two filters the next rule they share is looked for. */
const RESYNC_WINDOW = 16

/**
 * alignRules walks the new filter beside the previous one's rules, both in order, and
 * returns the new filter's rules (the kept ones where a rule is written the same) with the
 * indices of the added rules and the dropped kept rules; undefined when more than `limit`
 * changed. The controller sends its filter sorted, so a change is a few rules added or
 * dropped in place: after a mismatch, the nearest rule the two share (within
 * RESYNC_WINDOW) resumes the walk. A pairing is only ever of equal rules, so the filter
 * is always the previous one minus the dropped rules plus the added ones, whatever the
 * order; a reordered filter shows up as many changes and compiles afresh.
 */
export function alignRules (filter: FilterRule[], kept: readonly KeptRule[], limit: number): { rules: Array<KeptRule | undefined>, added: number[], dropped: KeptRule[] } | undefined {
  const n = filter.length
  const m = kept.length
  const rules = new Array<KeptRule | undefined>(n)
  const added: number[] = []
  const dropped: KeptRule[] = []
  let i = 0
  let j = 0
  while (i < n && j < m) {
    if (sameRule(filter[i]!, kept[j]!)) { rules[i++] = kept[j++]; continue }
    // the nearest pair (i + a, j + b) that is the same rule, nearest meaning least a + b
    let a = 1
    let b = 1
    search: for (let d = 1; d <= RESYNC_WINDOW; d++) {
      for (let x = 0; x <= d; x++) {
        if (i + x < n && j + d - x < m && sameRule(filter[i + x]!, kept[j + d - x]!)) { a = x; b = d - x; break search }
      }
    }
    for (let x = 0; x < a; x++) added.push(i + x)
    for (let x = 0; x < b; x++) dropped.push(kept[j + x]!)
    i += a
    j += b
    if (added.length + dropped.length > limit) return undefined
  }
  if (added.length + dropped.length + (n - i) + (m - j) > limit) return undefined
  for (; i < n; i++) added.push(i)
  for (; j < m; j++) dropped.push(kept[j]!)
  return { rules, added, dropped }
}

/**
 * editedRule reads `rule` (the i-th of the new filter) as the kept rule `k` with sources
 * added or removed: the same protocols and ports as written, and at most a sixteenth of the
 * sources (64 at least) different. The two source lists are walked side by side as
 * alignRules walks rules, resuming after a difference at the nearest source they share. It
 * returns the new rule, which keeps k's grant, and the sources lost and gained (as a
 * multiset: a source that only moved is neither); undefined when the rule is not such an
 * edit of k. The cost is one comparison per source plus what changed, not a parse of every
 * source.
 */
export function editedRule (rule: FilterRule, i: number, k: KeptRule, sources: SourceParser): { rule: KeptRule, lost: AddrRange[], gained: AddrRange[] } | undefined {
  const { srcs, protos, ports } = rule
  if (!Array.isArray(srcs) || !Array.isArray(protos) || !Array.isArray(ports)) return undefined
  if (protos.length !== k.protos.length || ports.length * 2 !== k.ports.length) return undefined
  for (let x = 0; x < protos.length; x++) if (protos[x] !== k.protos[x]) return undefined
  for (let x = 0; x < ports.length; x++) {
    const p = ports[x]
    if (typeof p !== 'object' || p === null || p.first !== k.ports[2 * x] || p.last !== k.ports[2 * x + 1]) return undefined
  }
  const was = k.srcs
  const n = srcs.length
  const m = was.length
  const limit = Math.max(64, m >> 4)
  // every kept source is one range (only * is two): the new rule's ranges are the kept ones
  // of the sources they share, in place, and the parsed ones of the sources it gains
  const inPlace = k.parsed.ranges.length === m
  const ranges: AddrRange[] = []
  const gainedAt: number[] = []
  const lostAt: number[] = []
  const gain = (x: number): void => {
    gainedAt.push(x)
    const parsed = sources.source(srcs[x]!, i, x) // checks it as a full compile would
    if (inPlace) for (const r of parsed) ranges.push(r)
  }
  let a = 0
  let b = 0
  while (a < n && b < m) {
    if (srcs[a] === was[b]) {
      if (inPlace) ranges.push(k.parsed.ranges[b]!)
      a++
      b++
      continue
    }
    let da = 1
    let db = 1
    search: for (let d = 1; d <= RESYNC_WINDOW; d++) {
      for (let x = 0; x <= d; x++) {
        if (a + x < n && b + d - x < m && srcs[a + x] === was[b + d - x]) { da = x; db = d - x; break search }
      }
    }
    for (let x = 0; x < da; x++) gain(a + x)
    for (let x = 0; x < db; x++) lostAt.push(b + x)
    a += da
    b += db
    if (gainedAt.length + lostAt.length > limit) return undefined
  }
  if (gainedAt.length + lostAt.length + (n - a) + (m - b) > limit) return undefined
  for (; a < n; a++) gain(a)
  for (; b < m; b++) lostAt.push(b)
  // a source both lost and gained only moved
  const left = new Map<string, number>()
  for (const x of lostAt) left.set(was[x]!, (left.get(was[x]!) ?? 0) + 1)
  const gained: AddrRange[] = []
  for (const x of gainedAt) {
    const c = left.get(srcs[x]!) ?? 0
    if (c > 0) left.set(srcs[x]!, c - 1)
    else for (const r of sources.source(srcs[x]!, i, x)) gained.push(r)
  }
  const lost: AddrRange[] = []
  for (const [src, c] of left) for (let x = 0; x < c; x++) for (const r of sources.source(src, i, 0)) lost.push(r)
  if (!inPlace) for (let j = 0; j < n; j++) for (const r of sources.source(srcs[j]!, i, j)) ranges.push(r)
  const parsed: ParsedRule = { ports: k.parsed.ports, ranges, protos: k.parsed.protos, grant: k.parsed.grant }
  return { rule: { srcs: [...srcs], protos: k.protos, ports: k.ports, parsed }, lost, gained }
}
