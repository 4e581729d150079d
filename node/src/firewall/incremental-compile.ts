/**
 * incremental-compile compiles a filter reusing the previous compile: afresh, it reuses the
 * entries of single sources whose ports did not change (compileAfresh); when only a few rules
 * or sources changed, it patches the previous compile and looks only at those
 * (patchCompiled). Both give the elements compileElements gives, up to order.
 */
import { protocolHasPorts, type FilterRule } from '@warren/protocol'
import type { AddrRange } from './addresses.js'
import {
  blockElements, collectGroups, disjointBlocks, eachGrant, groupKeyOf, keepRule, parseRule,
  type Block, type Grant, type KeptRule, type ParsedRule, type SourceParser
} from './element-compile.js'
import { makeCompiledFilter, singleEntry, Singles, type CompiledFilter, type CompiledGroup, type SingleEntry } from './compiled-filter.js'
import { NO_PORTS, unionPorts, type Ports } from './ports.js'
import { alignRules, editedRule } from './rule-align.js'
import type { Element } from './set-elements.js'

/** PATCH_LIMIT: a change of more rules than this (or a sixteenth of them) compiles afresh. */
const PATCH_LIMIT = 64

/**
 * touchesRange says whether an address lies in one of the sorted, disjoint spans of
 * sweptSpans (binary search): such a single goes through the sweep with the ranges.
 */
function touchesRange (spans: Array<[bigint, bigint]>, n: bigint): boolean {
  let lo = 0
  let hi = spans.length - 1
  while (lo <= hi) {
    const mid = (lo + hi) >> 1
    const [a, b] = spans[mid]!
    if (n < a) hi = mid - 1
    else if (n > b) lo = mid + 1
    else return true
  }
  return false
}

/**
 * sweptSpans returns the sorted, disjoint address spans whose single sources may merge
 * with range sources in the sweep: each range widened by one address on each side, and
 * then by every run of consecutive single addresses it reaches (a single next to a range
 * joins it, and the next single joins that), so singles outside them stand alone.
 */
function sweptSpans (blocks: AddrRange[]): Array<[bigint, bigint]> {
  const ranges = blocks.filter(b => b.lo !== b.hi)
  if (ranges.length === 0) return []
  const singles = new Set(blocks.filter(b => b.lo === b.hi).map(b => b.lo))
  const widened = ranges.map((r): [bigint, bigint] => {
    let lo = r.lo - 1n
    let hi = r.hi + 1n
    while (singles.has(lo)) lo--
    while (singles.has(hi)) hi++
    return [lo, hi]
  }).sort((a, b) => a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)
  const spans: Array<[bigint, bigint]> = []
  for (const [lo, hi] of widened) {
    const last = spans[spans.length - 1]
    if (last !== undefined && lo <= last[1] + 1n) { if (hi > last[1]) last[1] = hi } else spans.push([lo, hi])
  }
  return spans
}

/** SourceChanges are, per group and touched source, the grants it loses and gains. */
type SourceChanges = Map<number, Map<AddrRange, { gone: Grant[], come: Grant[] }>>

/**
 * noteChanges lists the grants each source loses and gains between `prev` and `filter`,
 * given the aligned rules (it fills in `rules` for the added ones). It returns undefined
 * when a touched source is not a single address in a group without range sources.
 */
function noteChanges (filter: FilterRule[], prev: CompiledFilter, aligned: NonNullable<ReturnType<typeof alignRules>>, sources: SourceParser): SourceChanges | undefined {
  const { rules, added, dropped } = aligned
  const changes: SourceChanges = new Map()
  let simple = true
  const noteRanges = (ranges: readonly AddrRange[], r: Pick<ParsedRule, 'protos' | 'ports' | 'grant'>, into: 'gone' | 'come'): void => {
    eachGrant({ ...r, ranges: ranges as AddrRange[] }, (range, proto) => {
      const key = groupKeyOf(range.v6, proto)
      if (range.single !== true || prev.groups.get(key)?.hasRanges === true) simple = false
      let m = changes.get(key)
      if (m === undefined) changes.set(key, m = new Map())
      let c = m.get(range)
      if (c === undefined) m.set(range, c = { gone: [], come: [] })
      c[into].push(r.grant)
    })
  }
  // A rule that only gained or lost sources (say a group's members) comes back as dropped and
  // added; taken as one rule, only the sources that changed are looked at.
  const unpaired = new Set(dropped)
  for (const i of added) {
    for (const k of unpaired) {
      const edit = editedRule(filter[i]!, i, k, sources)
      if (edit === undefined) continue
      unpaired.delete(k)
      rules[i] = edit.rule
      noteRanges(edit.lost, k.parsed, 'gone')
      noteRanges(edit.gained, edit.rule.parsed, 'come')
      break
    }
    if (rules[i] === undefined) {
      rules[i] = keepRule(filter[i]!, parseRule(filter[i]!, i, sources))
      noteRanges(rules[i]!.parsed.ranges, rules[i]!.parsed, 'come')
    }
  }
  for (const k of unpaired) noteRanges(k.parsed.ranges, k.parsed, 'gone')
  return simple ? changes : undefined
}

/**
 * patchGroup applies one group's source changes to its previous entries; undefined when a
 * dropped grant is not found (then the caller compiles afresh rather than guess).
 */
function patchGroup (key: number, old: CompiledGroup | undefined, sources: Map<AddrRange, { gone: Grant[], come: Grant[] }>): CompiledGroup | 'empty' | undefined {
  const proto = key & 255
  const g = { v6: key >= 256, proto, hasPorts: protocolHasPorts(proto) }
  const grantPorts = (ports: Ports | undefined, r: Grant): Ports => ports === undefined ? (g.hasPorts ? r.ports : NO_PORTS) : g.hasPorts ? unionPorts(ports, r.ports) : ports
  const updates = new Map<AddrRange, SingleEntry | undefined>()
  for (const [range, { gone, come }] of sources) {
    const was = old?.singles.get(range)
    let from = was?.from ?? []
    let ports: Ports | undefined = was?.ports
    if (gone.length > 0) {
      // a dropped rule granted this source once per grant: take those grants away
      from = [...from]
      for (const r of gone) {
        const at = from.indexOf(r)
        if (at < 0) return undefined
        from.splice(at, 1)
      }
      ports = undefined
      for (const r of from) ports = grantPorts(ports, r)
    }
    if (come.length > 0) {
      from = [...from, ...come]
      for (const r of come) ports = grantPorts(ports, r)
    }
    updates.set(range, ports === undefined ? undefined : singleEntry(g, range, ports, from, was))
  }
  const singles = old?.singles.with(updates) ?? new Singles(new Map()).with(updates)
  const swept = old?.swept ?? []
  if (singles.size === 0 && swept.length === 0) return 'empty'
  const next: CompiledGroup = { ...g, hasRanges: false, singles, swept }
  if (old?.sweptTexts !== undefined) next.sweptTexts = old.sweptTexts
  return next
}

/**
 * patchCompiled compiles `filter` as a change of `prev` when only a few rules were added or
 * dropped (see alignRules), or only a few sources of a rule changed (see editedRule), and
 * the sources touched are single addresses in groups without range sources: then only
 * those sources' entries change, from the grants they hold. It returns undefined when that
 * does not hold, and the caller compiles afresh. It checks the added rules and sources as a
 * full compile would, with the same errors.
 */
export function patchCompiled (filter: FilterRule[], prev: CompiledFilter, sources: SourceParser): CompiledFilter | undefined {
  const aligned = alignRules(filter, prev.rules, Math.min(PATCH_LIMIT, Math.max(16, filter.length >> 4)))
  if (aligned === undefined) return undefined
  const changes = noteChanges(filter, prev, aligned, sources)
  if (changes === undefined) return undefined
  const groups = new Map(prev.groups)
  const touched = new Map<number, Set<AddrRange>>()
  for (const [key, changed] of changes) {
    const next = patchGroup(key, prev.groups.get(key), changed)
    if (next === undefined) return undefined
    touched.set(key, new Set(changed.keys()))
    if (next === 'empty') groups.delete(key)
    else groups.set(key, next)
  }
  return makeCompiledFilter(groups, aligned.rules as KeptRule[], prev.sources, { from: prev.id, touched })
}

/**
 * compileAfresh compiles a whole filter. A single address that no range source contains or
 * touches is its own disjoint block: nothing merges with it (single addresses never join
 * each other), so its elements depend on its ports alone, and the entry `prev` holds for it
 * is reused while those stay.
 */
export function compileAfresh (filter: FilterRule[], prev: CompiledFilter | undefined, sources: SourceParser): CompiledFilter {
  const rules: KeptRule[] = []
  const groups = new Map<number, CompiledGroup>()
  for (const g of collectGroups(filter, sources, rules)) {
    const key = groupKeyOf(g.v6, g.proto)
    const before = prev?.groups.get(key)?.singles
    const spans = g.hasRanges ? sweptSpans([...g.blocks.keys()]) : []
    const singles = new Map<AddrRange, SingleEntry>()
    const rest: Block[] = []
    for (const [range, ports] of g.blocks) {
      if (range.single !== true || (spans.length > 0 && touchesRange(spans, range.lo))) { rest.push({ lo: range.lo, hi: range.hi, ports, text: range.text! }); continue }
      singles.set(range, singleEntry(g, range, ports, g.from!.get(range)!, before?.get(range)))
    }
    const swept: Element[] = []
    for (const b of disjointBlocks(rest)) blockElements(g, b, swept)
    groups.set(key, { v6: g.v6, proto: g.proto, hasPorts: g.hasPorts, hasRanges: g.hasRanges, singles: new Singles(singles), swept })
  }
  return makeCompiledFilter(groups, rules, sources)
}
