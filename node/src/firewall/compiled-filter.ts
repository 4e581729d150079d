/**
 * compiled-filter holds a compile kept for the next one: elements per family and protocol
 * and per single-address source, so that the next compile reuses what did not change and
 * the diff of two compiles (diffCompiled) costs what changed, not the size of the mesh.
 */
import type { AddrRange } from './addresses.js'
import { blockElements, type Grant, type Group, type KeptRule } from './element-compile.js'
import { samePorts, type Ports } from './ports.js'
import { SET_NAMES, toSets, type Element, type SetDiff, type SetElements } from './set-elements.js'

/**
 * SingleEntry is what one single-address source contributes to its group: its ports, its
 * elements, and the rules that grant it (one entry per grant), so that when a rule goes,
 * the ports of the sources it named are the union over the rules left.
 */
export interface SingleEntry { ports: Ports, elements: Element[], from: Grant[] }

/**
 * Singles maps a group's single-address sources to their entries. A compile must stay valid
 * after the next one patched it (a refused update keeps it in force), and copying a map of
 * every peer for each patch would cost the size of the mesh. So a patched map shares `base`
 * with the one it patched and holds only the entries changed since in `over` (undefined for
 * a removed source); once `over` outgrows a sixteenth of `base`, it is folded into a new
 * base. A patch then costs what changed, plus now and then one copy of the map.
 */
export class Singles {
  readonly size: number
  private readonly base: Map<AddrRange, SingleEntry>
  private readonly over: Map<AddrRange, SingleEntry | undefined>

  constructor (base: Map<AddrRange, SingleEntry>, over: Map<AddrRange, SingleEntry | undefined> = new Map(), size = base.size) {
    this.base = base
    this.over = over
    this.size = size
  }

  get (r: AddrRange): SingleEntry | undefined {
    return this.over.size > 0 && this.over.has(r) ? this.over.get(r) : this.base.get(r)
  }

  has (r: AddrRange): boolean { return this.get(r) !== undefined }

  * entries (): IterableIterator<[AddrRange, SingleEntry]> {
    for (const e of this.base) if (this.over.size === 0 || !this.over.has(e[0])) yield e
    for (const [r, s] of this.over) if (s !== undefined) yield [r, s]
  }

  * values (): IterableIterator<SingleEntry> {
    for (const [, s] of this.entries()) yield s
  }

  /** with returns these entries changed by `changes` (undefined removes a source); this one stays as it is. */
  with (changes: Map<AddrRange, SingleEntry | undefined>): Singles {
    const over = new Map(this.over)
    let size = this.size
    for (const [r, s] of changes) {
      const had = this.get(r) !== undefined
      size += (s !== undefined ? 1 : 0) - (had ? 1 : 0)
      over.set(r, s)
    }
    if (over.size <= Math.max(64, this.base.size >> 4)) return new Singles(this.base, over, size)
    const base = new Map(this.base)
    for (const [r, s] of over) { if (s === undefined) base.delete(r); else base.set(r, s) }
    return new Singles(base)
  }
}

/** CompiledGroup holds one family and protocol's elements in two parts. */
export interface CompiledGroup {
  v6: boolean
  proto: number
  hasPorts: boolean
  /** whether any source of the group is wider than one address (then `swept` is used) */
  hasRanges: boolean
  /**
   * singles: sources of one address that no range source contains or touches; their
   * elements depend on nothing else, so they are kept per source and reused while its
   * ports stay the same
   */
  singles: Singles
  /** swept: the elements of the range sources and the single ones inside or next to them */
  swept: Element[]
  sweptTexts?: Set<string>
}

/**
 * CompiledFilter is a filter's elements kept per group and per single-address source (see
 * the compiler's compileIncremental and diffCompiled). It is never changed after it is
 * made, so an older one stays valid.
 */
export interface CompiledFilter {
  groups: Map<number, CompiledGroup>
  /** sources: the source cache its range objects come from; ranges of another are not comparable */
  sources: object
  /** rules: the filter's rules in order, to find which rules the next filter adds or drops */
  rules: readonly KeptRule[]
  /** id names this compile, so that a patch can name the compile it patched without holding it */
  id: object
  /**
   * patched: set when this compile patched the compile `from`, naming the sources it touched
   * per group (an id, not the compile: a chain of compiles would never be freed)
   */
  patched?: { from: object, touched: Map<number, Set<AddrRange>> }
  /** sets materialises the elements (cached), as compileFilter would give them up to order */
  sets: () => SetElements
}

/** makeCompiledFilter wraps a compile's groups and rules. */
export function makeCompiledFilter (groups: Map<number, CompiledGroup>, rules: readonly KeptRule[], sources: object, patched?: CompiledFilter['patched']): CompiledFilter {
  let sets: SetElements | undefined
  return {
    groups,
    sources,
    rules,
    id: {},
    ...(patched !== undefined ? { patched } : {}),
    sets: () => sets ??= toSets([...groups.values()].flatMap(g => [g.swept, ...[...g.singles.values()].map(s => s.elements)]))
  }
}

function sameGrants (a: Grant[], b: Grant[]): boolean {
  if (a === b) return true
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

/**
 * singleEntry returns the entry of an isolated single source granted by `from`: `old` when
 * nothing changed, else a new entry that keeps old's elements while its ports are the same.
 */
export function singleEntry (g: Pick<Group, 'v6' | 'proto' | 'hasPorts'>, range: AddrRange, ports: Ports, from: Grant[], old: SingleEntry | undefined): SingleEntry {
  if (old !== undefined && samePorts(old.ports, ports)) return sameGrants(old.from, from) ? old : { ports: old.ports, elements: old.elements, from }
  const elements: Element[] = []
  blockElements(g, { lo: range.lo, hi: range.hi, ports, text: range.text! }, elements)
  return { ports, elements, from }
}

/** ElementChanges collects elements deleted and added while two compiles are compared. */
interface ElementChanges { del: Element[], add: Element[] }

/** compareSingle notes what changed between two entries of one source. */
function compareSingle (out: ElementChanges, was: SingleEntry | undefined, s: SingleEntry | undefined): void {
  if (was === s || (was !== undefined && s !== undefined && was.elements === s.elements)) return
  if (was === undefined) { out.add.push(...s!.elements); return }
  if (s === undefined) { out.del.push(...was.elements); return }
  const had = new Set(was.elements.map(e => e[1]))
  const has = new Set(s.elements.map(e => e[1]))
  for (const e of was.elements) if (!has.has(e[1])) out.del.push(e)
  for (const e of s.elements) if (!had.has(e[1])) out.add.push(e)
}

const sweptTexts = (g: CompiledGroup): Set<string> => g.sweptTexts ??= new Set(g.swept.map(e => e[1]))

/** compareGroups notes what changed between two compiles, group by group. */
function compareGroups (out: ElementChanges, prev: CompiledFilter, next: CompiledFilter): void {
  for (const [key, g] of next.groups) {
    const old = prev.groups.get(key)
    if (old === undefined) {
      out.add.push(...g.swept)
      for (const s of g.singles.values()) out.add.push(...s.elements)
      continue
    }
    for (const [range, s] of g.singles.entries()) compareSingle(out, old.singles.get(range), s)
    for (const [range, s] of old.singles.entries()) if (!g.singles.has(range)) out.del.push(...s.elements)
    if (g.swept.length > 0 || old.swept.length > 0) {
      const had = sweptTexts(old)
      const has = sweptTexts(g)
      for (const e of old.swept) if (!has.has(e[1])) out.del.push(e)
      for (const e of g.swept) if (!had.has(e[1])) out.add.push(e)
    }
  }
  for (const [key, old] of prev.groups) {
    if (next.groups.has(key)) continue
    out.del.push(...old.swept)
    for (const s of old.singles.values()) out.del.push(...s.elements)
  }
}

/**
 * diffCompiled is diffSets(prev.sets(), next.sets()) in the cost of what changed: single
 * sources are compared by their ports and only the swept parts element by element; after
 * a patch of `prev`, only the sources the patch touched.
 */
export function diffCompiled (prev: CompiledFilter, next: CompiledFilter): SetDiff {
  const out: ElementChanges = { del: [], add: [] }
  if (next.patched?.from === prev.id) {
    for (const [key, ranges] of next.patched.touched) {
      const old = prev.groups.get(key)?.singles
      const now = next.groups.get(key)?.singles
      for (const range of ranges) compareSingle(out, old?.get(range), now?.get(range))
    }
  } else {
    compareGroups(out, prev, next)
  }
  // A single that moved between the two parts shows up as deleted and added: cancel those.
  const added = new Set(out.add.map(e => e[1]))
  const deleted = new Set(out.del.map(e => e[1]))
  const diff: SetDiff = {
    del: toSets([out.del.filter(e => !added.has(e[1]))]),
    add: toSets([out.add.filter(e => !deleted.has(e[1]))]),
    size: 0
  }
  for (const name of SET_NAMES) diff.size += diff.del[name].length + diff.add[name].length
  return diff
}
