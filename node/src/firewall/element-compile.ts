/**
 * element-compile turns a checked filter into canonical set elements: rules are parsed,
 * gathered per family and protocol, their sources swept into disjoint blocks, and each
 * block written as the elements of the set that fits it. Pure: the parse of a source comes
 * through a SourceParser, which the compiler (ruleset-compiler.ts) backs with its cache.
 */
import { WarrenError, protocolHasPorts, type FilterRule } from '@warren/protocol'
import { formatAddrRange, type AddrRange } from './addresses.js'
import { mergePorts, NO_PORTS, rulePorts, unionPorts, type Ports } from './ports.js'
import { EXPAND_PORTS, toSets, type Element, type SetElements, type SetName } from './set-elements.js'

/**
 * SourceParser reads the `index`-th source of rule `rule` into ranges (one object per
 * distinct range, with its nft text), throwing WarrenError `bad_filter` naming the field.
 */
export interface SourceParser {
  source: (text: string, rule: number, index: number) => AddrRange[]
}

/** Block is one source range allowed on one protocol for some ports (all ports when portless). */
export interface Block { lo: bigint, hi: bigint, ports: Ports, /** nft text of lo-hi, when known */ text?: string }

/**
 * disjointBlocks merges the blocks of one family and protocol into disjoint ones. Sources
 * are CIDRs, so two blocks are either nested or disjoint: a walk in address order with a
 * stack of enclosing blocks gives each stretch of addresses the union of the ports of the
 * blocks around it, and neighbouring stretches with the same ports are joined.
 */
export function disjointBlocks (blocks: Block[]): Block[] {
  const sorted = [...blocks].sort((a, b) => a.lo < b.lo ? -1 : a.lo > b.lo ? 1 : a.hi > b.hi ? -1 : a.hi < b.hi ? 1 : 0)
  const keys = new Map<Ports, string>()
  const keyOf = (ports: Ports): string => {
    let k = keys.get(ports)
    if (k === undefined) keys.set(ports, k = ports.map(r => `${r[0]}-${r[1]}`).join(','))
    return k
  }
  const out: Array<Block & { key: string }> = []
  const emit = (lo: bigint, hi: bigint, ports: Ports, text?: string): void => {
    const key = keyOf(ports)
    const last = out[out.length - 1]
    // Stretches with the same ports join, except two single addresses: peers stay single,
    // for the hash sets.
    if (last !== undefined && last.key === key && last.hi + 1n === lo && (last.lo !== last.hi || lo !== hi)) {
      last.hi = hi
      delete last.text
    } else {
      out.push(text === undefined ? { lo, hi, ports, key } : { lo, hi, ports, key, text })
    }
  }
  const stack: Block[] = [] // enclosing blocks, each with the union of its and its ancestors' ports
  let pos = 0n // the first address not yet emitted
  const close = (upTo: bigint): void => {
    while (stack.length > 0 && stack[stack.length - 1]!.hi < upTo) {
      const top = stack.pop()!
      if (pos <= top.hi) { emit(pos, top.hi, top.ports, pos === top.lo ? top.text : undefined); pos = top.hi + 1n }
    }
  }
  for (const b of sorted) {
    close(b.lo)
    const parent = stack[stack.length - 1]
    if (parent !== undefined && pos < b.lo) emit(pos, b.lo - 1n, parent.ports)
    pos = b.lo
    stack.push(parent === undefined ? b : { ...b, ports: mergePorts([...parent.ports, ...b.ports]) })
  }
  close(1n << 129n)
  return out
}

/**
 * Grant is what a rule gives each source it names: its ports. The compile notes per source
 * the grants it holds; a rule whose sources change but not its protocols and ports keeps its
 * grant, so the sources it still names keep theirs untouched (see patchCompiled).
 */
export interface Grant { readonly ports: Ports }

/** ParsedRule is one checked rule: merged ports, parsed sources, protocols, and its grant. */
export interface ParsedRule { ports: Ports, ranges: AddrRange[], protos: number[], grant: Grant }

/** parseRule checks the i-th rule and parses it, or throws WarrenError naming the field. */
export function parseRule (rule: FilterRule, i: number, sources: SourceParser): ParsedRule {
  const ports = rulePorts(rule.ports, i)
  const ranges: AddrRange[] = []
  for (let j = 0; j < rule.srcs.length; j++) {
    for (const one of sources.source(rule.srcs[j]!, i, j)) ranges.push(one)
  }
  for (let k = 0; k < rule.protos.length; k++) {
    const proto = rule.protos[k]!
    if (!Number.isInteger(proto) || proto < 0 || proto > 255) {
      throw new WarrenError('bad_filter', `filter[${i}].protos[${k}]: ${proto} is not an IANA protocol number (0-255)`, { field: `filter[${i}].protos[${k}]` })
    }
  }
  return { ports, ranges, protos: rule.protos, grant: { ports } }
}

/**
 * KeptRule is one rule of a compiled filter: a copy of it (the caller's rules may change
 * later), to compare the next filter's rules with, and its parse.
 */
export interface KeptRule {
  srcs: readonly string[]
  protos: readonly number[]
  /** first0, last0, first1, last1, ... as written */
  ports: readonly number[]
  parsed: ParsedRule
}

/** keepRule copies a rule that parsed as `parsed`. */
export function keepRule (rule: FilterRule, parsed: ParsedRule): KeptRule {
  const ports: number[] = []
  for (const p of rule.ports) ports.push(p.first, p.last)
  const protos = [...rule.protos]
  return { srcs: [...rule.srcs], protos, ports, parsed: { ...parsed, protos } }
}

/** groupKeyOf keys a family and protocol as one number: 0-255 IPv4, 256-511 IPv6. */
export const groupKeyOf = (v6: boolean, proto: number): number => (v6 ? 256 : 0) + proto

/**
 * eachGrant calls `use` for every source and protocol a rule allows, with the rule's ports
 * (undefined for a portless protocol); protocols with ports but no ports allow nothing.
 */
export function eachGrant (r: ParsedRule, use: (range: AddrRange, proto: number, ports: Ports | undefined) => void): void {
  for (const proto of r.protos) {
    const hasPorts = protocolHasPorts(proto)
    if (hasPorts && r.ports.length === 0) continue
    for (const range of r.ranges) use(range, proto, hasPorts ? r.ports : undefined)
  }
}

/** Group is one family and protocol: its blocks keyed by their source range, ports merged. */
export interface Group {
  v6: boolean
  proto: number
  hasPorts: boolean
  blocks: Map<AddrRange, Ports>
  /** whether any source is wider than one address */
  hasRanges: boolean
  /** the rules that grant each source, one entry per grant (only when collectGroups keeps rules) */
  from?: Map<AddrRange, Grant[]>
}

/** groupOrder puts IPv4 before IPv6, then protocols by number: the order elements come out in. */
const groupOrder = (a: Group, b: Group): number => Number(a.v6) - Number(b.v6) || a.proto - b.proto

/**
 * collectGroups checks a filter and gathers, per family and protocol, each distinct source
 * with the union of the ports the rules give it. With `keep`, it also appends each rule
 * there (see KeptRule) and notes in `from` which rules grant each source. It throws
 * WarrenError (code `bad_filter`, naming the field) on malformed input.
 */
export function collectGroups (filter: FilterRule[], sources: SourceParser, keep?: KeptRule[]): Group[] {
  const groups = new Map<number, Group>()
  for (let i = 0; i < filter.length; i++) {
    let parsed = parseRule(filter[i]!, i, sources)
    if (keep !== undefined) {
      const k = keepRule(filter[i]!, parsed)
      keep.push(k)
      parsed = k.parsed
    }
    eachGrant(parsed, (r, proto, ports) => {
      const key = groupKeyOf(r.v6, proto)
      let g = groups.get(key)
      if (g === undefined) groups.set(key, g = { v6: r.v6, proto, hasPorts: ports !== undefined, blocks: new Map(), hasRanges: false, ...(keep !== undefined ? { from: new Map() } : {}) })
      if (g.from !== undefined) {
        const from = g.from.get(r)
        if (from === undefined) g.from.set(r, [parsed.grant])
        else from.push(parsed.grant)
      }
      // one block per distinct source keeps the sweep's active set small
      const same = g.blocks.get(r)
      if (same === undefined) {
        g.blocks.set(r, ports ?? NO_PORTS)
        if (r.single !== true) g.hasRanges = true
      } else if (ports !== undefined) {
        g.blocks.set(r, unionPorts(same, ports))
      }
    })
  }
  return [...groups.values()].sort(groupOrder)
}

/** blockElements turns one disjoint block of a group into set elements. */
export function blockElements (g: Pick<Group, 'v6' | 'proto' | 'hasPorts'>, b: Block, out: Element[]): void {
  const single = b.lo === b.hi
  const src = b.text ?? formatAddrRange(g.v6, b.lo, b.hi)
  const fam = g.v6 ? '6' : '4'
  const allPorts = b.ports.length === 1 && b.ports[0]![0] === 0 && b.ports[0]![1] === 65535
  if (!g.hasPorts || allPorts) { out.push([`allow${fam}p${single ? '' : 'i'}` as SetName, `${src} . ${g.proto}`]); return }
  for (const [first, last] of b.ports) {
    if (single && last - first < EXPAND_PORTS) {
      for (let port = first; port <= last; port++) out.push([`allow${fam}` as SetName, `${src} . ${g.proto} . ${port}`])
    } else {
      out.push([`allow${fam}i` as SetName, `${src} . ${g.proto} . ${first === last ? first : `${first}-${last}`}`])
    }
  }
}

/**
 * compileElements turns a filter into the canonical elements of Warren's sets. Elements
 * come out in a fixed order (family and protocol, then address, then port) without a
 * global sort, which would cost more than the rest at 100,000 elements.
 */
export function compileElements (filter: FilterRule[], sources: SourceParser): SetElements {
  const out: Element[] = []
  for (const g of collectGroups(filter, sources)) {
    const blocks: Block[] = []
    for (const [r, ports] of g.blocks) blocks.push({ lo: r.lo, hi: r.hi, ports, text: r.text! })
    for (const b of disjointBlocks(blocks)) blockElements(g, b, out)
  }
  return toSets([out])
}
