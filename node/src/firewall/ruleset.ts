/**
 * ruleset turns a node's inbound packet filter (protocol FilterRule[]) into the nftables
 * ruleset that enforces it, as pure functions: compile the rules into canonical set
 * elements (compileFilter, or compileIncremental and diffCompiled, which reuse the previous
 * compile so that a one-peer change costs what changed), render the whole table or an element diff as an `nft -f` script, read the
 * elements back from `nft -j list table`, and evaluate a filter directly
 * (`filterAllows`, the reference that tests hold the generated ruleset to).
 *
 * The table judges only packets that arrive on the mesh interface; packets that leave by it
 * only record the flows this node opens, so that their replies pass (flowChains). Allowed
 * tuples live in sets with concatenated keys, so a packet costs at most four policy set
 * lookups, whatever the number of rules:
 *   allow4 / allow6:     one source address . protocol . one destination port (hash)
 *   allow4p / allow6p:   one source address . protocol, for any port or a portless protocol
 *                        such as ICMP (hash)
 *   allow4i / allow6i:   source range . protocol . port range (interval)
 *   allow4pi / allow6pi: source range . protocol, any port or portless (interval)
 * Peers are single addresses, so a mesh's elements mostly land in the hash sets, whose
 * lookups and updates cost the same at 10 or 10,000 peers; interval sets (nft's pipapo,
 * whose lookup and commit cost grows with their size) hold only CIDR sources and port
 * ranges wider than EXPAND_PORTS. Elements are disjoint and canonical, so the same filter
 * always yields the same elements, whatever the order of its rules.
 *
 * Semantics of a FilterRule as enforced here:
 * - `srcs`: IPv4/IPv6 addresses or CIDRs (host bits are ignored), or `*` for every address.
 * - `protos`: IANA numbers; an empty list allows nothing (fail-closed).
 * - `ports`: used only for protocols with ports (PORT_PROTOCOLS); for the others the rule
 *   allows the protocol from its sources whatever `ports` holds.
 */
import ipaddr from 'ipaddr.js'
import { isIPv4, isIPv6 } from 'node:net'
import { WarrenError, type FilterRule, type PortRange } from '@warren/protocol'

/** PORT_PROTOCOLS are the IANA protocols whose header starts with source and destination ports. */
export const PORT_PROTOCOLS: readonly number[] = [6, 17, 33, 132, 136] // tcp udp dccp sctp udplite

/** SET_NAMES names Warren's sets: per family, with or without a port field, hash or interval. */
export const SET_NAMES = ['allow4', 'allow4p', 'allow4i', 'allow4pi', 'allow6', 'allow6p', 'allow6i', 'allow6pi'] as const

/** EXPAND_PORTS: a port range of at most this many ports from one address becomes hash elements. */
export const EXPAND_PORTS = 16

/** setHasPorts says whether a set's key ends with a destination port. */
export function setHasPorts (set: SetName): boolean { return !set.slice(5).includes('p') }
const setIsV6 = (set: SetName): boolean => set.startsWith('allow6')
const setIsInterval = (set: SetName): boolean => set.endsWith('i')
export type SetName = typeof SET_NAMES[number]

/** SetElements holds each set's elements as canonical `nft` element text, sorted. */
export type SetElements = Record<SetName, string[]>

/** RULESET_MARKER tags the rule that hooks the mesh interface, so a read-back can recognise our layout. */
export const RULESET_MARKER = 'warren ruleset v3'

/** RulesetOptions says where the ruleset lives and which interface it judges. */
export interface RulesetOptions {
  /** nftables table name; Warren owns this table and touches nothing else */
  table: string
  /** the mesh (WireGuard) interface whose inbound traffic is judged */
  interfaceName: string
}

/** Packet is what filterAllows and the tracers judge: a source, protocol and destination port. */
export interface Packet {
  src: string
  proto: number
  /** destination port; only meaningful for PORT_PROTOCOLS */
  dport?: number
}

// ---------- addresses ----------

/** AddrRange is an inclusive range of IPv4 (32-bit) or IPv6 (128-bit) addresses. */
interface AddrRange {
  v6: boolean
  lo: bigint
  hi: bigint
  /** nft text, once formatted */
  text?: string
  /** one address (lo === hi), known without comparing bigints again */
  single?: boolean
}


function bigintToBytes (n: bigint, len: number): number[] {
  const out = new Array<number>(len)
  for (let i = len - 1; i >= 0; i--) { out[i] = Number(n & 0xffn); n >>= 8n }
  return out
}

/** parseAddress reads one strict IPv4 or IPv6 literal, or returns undefined. */
function parseAddress (s: string): { v6: boolean, n: bigint } | undefined {
  if (isIPv4(s)) return { v6: false, n: BigInt(s.split('.').reduce((n, b) => n * 256 + Number(b), 0)) }
  if (isIPv6(s) && !s.includes('%')) return { v6: true, n: BigInt('0x' + ipaddr.IPv6.parse(s).parts.map(w => w.toString(16).padStart(4, '0')).join('')) }
  return undefined
}

/** formatAddress prints an address as nft does (IPv6 in RFC 5952 short form). */
function formatAddress (v6: boolean, n: bigint): string {
  if (!v6) return bigintToBytes(n, 4).join('.')
  const hi = Number(n >> 64n)
  const lo = Number(n & 0xffffffffffffffffn)
  const words: number[] = []
  for (const half of [n >> 64n, n & 0xffffffffffffffffn]) {
    const h = Number(half >> 32n)
    const l = Number(half & 0xffffffffn)
    words.push(h >>> 16, h & 0xffff, l >>> 16, l & 0xffff)
  }
  if (hi === 0 && lo === 0) return '::'
  // the longest run (of two or more) of zero words becomes '::'
  let best = -1
  let bestLen = 1
  for (let i = 0; i < 8;) {
    let j = i
    while (j < 8 && words[j] === 0) j++
    if (j - i > bestLen) { best = i; bestLen = j - i }
    i = j === i ? i + 1 : j
  }
  const hex = words.map(w => w.toString(16))
  if (best < 0) return hex.join(':')
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`
}

const bits = (v6: boolean): bigint => v6 ? 128n : 32n
const allOnes = (v6: boolean): bigint => (1n << bits(v6)) - 1n

/** parseSource reads one `srcs` entry; `*` means every IPv4 and every IPv6 address. */
function parseSource (s: string, where: string): AddrRange[] {
  if (s === '*') return [{ v6: false, lo: 0n, hi: allOnes(false) }, { v6: true, lo: 0n, hi: allOnes(true) }]
  const slash = s.indexOf('/')
  const addr = parseAddress(slash < 0 ? s : s.slice(0, slash))
  const lenText = slash < 0 ? undefined : s.slice(slash + 1)
  if (addr === undefined || (lenText !== undefined && !/^\d{1,3}$/.test(lenText))) {
    throw new WarrenError('bad_filter', `${where}: "${s}" is not an IP address or CIDR; write for example 100.64.0.1, 100.64.0.0/10, fd7a::1/128 or *`, { field: where })
  }
  const len = lenText === undefined ? bits(addr.v6) : BigInt(lenText)
  if (len > bits(addr.v6)) {
    throw new WarrenError('bad_filter', `${where}: prefix length /${len} is too long for "${s}" (at most /${bits(addr.v6)})`, { field: where })
  }
  const hostMask = (1n << (bits(addr.v6) - len)) - 1n
  return [{ v6: addr.v6, lo: addr.n & ~hostMask, hi: (addr.n & ~hostMask) | hostMask }]
}

/** formatAddrRange renders a range as nft prints it: an address, a prefix, or `lo-hi`. */
function formatAddrRange (v6: boolean, lo: bigint, hi: bigint): string {
  if (lo === hi) return formatAddress(v6, lo)
  const size = hi - lo + 1n
  if ((size & (size - 1n)) === 0n && (lo & (size - 1n)) === 0n) {
    let hostBits = 0n
    while ((1n << hostBits) < size) hostBits++
    return `${formatAddress(v6, lo)}/${bits(v6) - hostBits}`
  }
  return `${formatAddress(v6, lo)}-${formatAddress(v6, hi)}`
}

// ---------- compiling a filter into set elements ----------

/** Ports is a sorted list of disjoint, non-adjacent inclusive port ranges. */
type Ports = Array<[number, number]>

function mergePorts (ranges: Ports): Ports {
  const sorted = [...ranges].sort((a, b) => a[0] - b[0] || a[1] - b[1])
  const out: Ports = []
  for (const r of sorted) {
    const last = out[out.length - 1]
    if (last !== undefined && r[0] <= last[1] + 1) last[1] = Math.max(last[1], r[1])
    else out.push([r[0], r[1]])
  }
  return out
}

/** unionPorts merges two canonical port lists in one pass. */
function unionPorts (a: Ports, b: Ports): Ports {
  const out: Ports = []
  let i = 0
  let j = 0
  while (i < a.length || j < b.length) {
    const r = j >= b.length || (i < a.length && a[i]![0] <= b[j]![0]) ? a[i++]! : b[j++]!
    const last = out[out.length - 1]
    if (last !== undefined && r[0] <= last[1] + 1) { if (r[1] > last[1]) last[1] = r[1] } else out.push([r[0], r[1]])
  }
  return out
}

function checkPorts (ports: PortRange[], where: string): Ports {
  return ports.map((p, i) => {
    const ok = (n: number): boolean => Number.isInteger(n) && n >= 0 && n <= 65535
    if (!ok(p.first) || !ok(p.last) || p.first > p.last) {
      throw new WarrenError('bad_filter', `${where}.ports[${i}]: ${p.first}-${p.last} is not a port range; first and last must be 0-65535 with first <= last`, { field: `${where}.ports[${i}]` })
    }
    return [p.first, p.last]
  })
}

/** Block is one source range allowed on one protocol for some ports (all ports when portless). */
interface Block { lo: bigint, hi: bigint, ports: Ports, /** nft text of lo-hi, when known */ text?: string }

/**
 * disjointBlocks merges the blocks of one family and protocol into disjoint ones. Sources
 * are CIDRs, so two blocks are either nested or disjoint: a walk in address order with a
 * stack of enclosing blocks gives each stretch of addresses the union of the ports of the
 * blocks around it, and neighbouring stretches with the same ports are joined.
 */
function disjointBlocks (blocks: Block[]): Block[] {
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
 * sourceCache keeps parsed (and formatted) sources between compiles: the engine sends the
 * whole filter on every change, and nearly all of its sources are the same as last time.
 */
const sourceCache = new Map<string, AddrRange[]>()
/** rangeByText gives every distinct range one object, so that maps can key on it cheaply. */
const rangeByText = new Map<string, AddrRange>()

/** cacheEpoch counts clears of the caches: range objects of another epoch are not comparable. */
let cacheEpoch = 0

/** trimSourceCache bounds the caches; it runs only between compiles, never inside one. */
function trimSourceCache (): void {
  if (sourceCache.size > 200_000) { sourceCache.clear(); rangeByText.clear(); cacheEpoch++ }
}

/** cachedSource is parseSource through sourceCache, with ranges shared by equal sources. */
function cachedSource (s: string, rule: number, index: number): AddrRange[] {
  let ranges = sourceCache.get(s)
  if (ranges === undefined) {
    ranges = parseSource(s, `filter[${rule}].srcs[${index}]`).map(r => {
      const text = formatAddrRange(r.v6, r.lo, r.hi)
      let same = rangeByText.get(text)
      if (same === undefined) rangeByText.set(text, same = { ...r, text, single: r.lo === r.hi })
      return same
    })
    sourceCache.set(s, ranges)
  }
  return ranges
}

/** NO_PORTS stands for the ports of a portless protocol. */
const NO_PORTS: Ports = [[0, 0]]

/** Group is one family and protocol: its blocks keyed by their source text, ports merged. */
interface Group {
  v6: boolean
  proto: number
  hasPorts: boolean
  blocks: Map<AddrRange, Ports>
  /** whether any source is wider than one address */
  hasRanges: boolean
  /** the rules that grant each source, one entry per grant (only when collectGroups keeps rules) */
  from?: Map<AddrRange, Grant[]>
}

/** groupBlocks lists a group's sources as blocks for the sweep. */
function groupBlocks (g: Group): Block[] {
  const out: Block[] = []
  for (const [r, ports] of g.blocks) out.push({ lo: r.lo, hi: r.hi, ports, text: r.text! })
  return out
}

/** groupOrder puts IPv4 before IPv6, then protocols by number: the order elements come out in. */
const groupOrder = (a: Group, b: Group): number => Number(a.v6) - Number(b.v6) || a.proto - b.proto

/**
 * Grant is what a rule gives each source it names: its ports. The compile notes per source
 * the grants it holds; a rule whose sources change but not its protocols and ports keeps its
 * grant, so the sources it still names keep theirs untouched (see patchCompiled).
 */
interface Grant { readonly ports: Ports }

/** ParsedRule is one checked rule: merged ports, parsed sources, protocols, and its grant. */
interface ParsedRule { ports: Ports, ranges: AddrRange[], protos: number[], grant: Grant }

/** parseRule checks the i-th rule and parses it, or throws WarrenError naming the field. */
function parseRule (rule: FilterRule, i: number): ParsedRule {
  const ports = rulePorts(rule.ports, i)
  const ranges: AddrRange[] = []
  for (let j = 0; j < rule.srcs.length; j++) {
    for (const one of cachedSource(rule.srcs[j]!, i, j)) ranges.push(one)
  }
  for (let k = 0; k < rule.protos.length; k++) {
    const proto = rule.protos[k]!
    if (!Number.isInteger(proto) || proto < 0 || proto > 255) {
      throw new WarrenError('bad_filter', `filter[${i}].protos[${k}]: ${proto} is not an IANA protocol number (0-255)`, { field: `filter[${i}].protos[${k}]` })
    }
  }
  return { ports, ranges, protos: rule.protos, grant: { ports } }
}

/** groupKeyOf keys a family and protocol as one number: 0-255 IPv4, 256-511 IPv6. */
const groupKeyOf = (v6: boolean, proto: number): number => (v6 ? 256 : 0) + proto

/**
 * eachGrant calls `use` for every source and protocol a rule allows, with the rule's ports
 * (undefined for a portless protocol); protocols with ports but no ports allow nothing.
 */
function eachGrant (r: ParsedRule, use: (range: AddrRange, proto: number, ports: Ports | undefined) => void): void {
  for (const proto of r.protos) {
    const hasPorts = PORT_PROTOCOLS.includes(proto)
    if (hasPorts && r.ports.length === 0) continue
    for (const range of r.ranges) use(range, proto, hasPorts ? r.ports : undefined)
  }
}

/**
 * collectGroups checks a filter and gathers, per family and protocol, each distinct source
 * with the union of the ports the rules give it. With `keep`, it also appends each rule
 * there (see KeptRule) and notes in `from` which rules grant each source. It throws
 * WarrenError (code `bad_filter`, naming the field) on malformed input.
 */
function collectGroups (filter: FilterRule[], keep?: KeptRule[]): Group[] {
  const groups = new Map<number, Group>()
  for (let i = 0; i < filter.length; i++) {
    let parsed = parseRule(filter[i]!, i)
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

/**
 * rulePorts checks a rule's ports and merges them; ports that are already sorted and
 * apart (as the controller sends them) skip the sort.
 */
function rulePorts (ports: PortRange[], i: number): Ports {
  let canonical = true
  for (let k = 0; k < ports.length; k++) {
    const p = ports[k]!
    if (!(Number.isInteger(p.first) && Number.isInteger(p.last) && p.first >= 0 && p.first <= p.last && p.last <= 65535)) {
      return mergePorts(checkPorts(ports, `filter[${i}]`)) // throws, naming the range
    }
    if (k > 0 && p.first <= ports[k - 1]!.last + 1) canonical = false
  }
  return canonical ? ports.map(p => [p.first, p.last]) : mergePorts(checkPorts(ports, `filter[${i}]`))
}

/** Element is one set element: the set it belongs to and its canonical text. */
type Element = readonly [SetName, string]

/** blockElements turns one disjoint block of a group into set elements. */
function blockElements (g: Pick<Group, 'v6' | 'proto' | 'hasPorts'>, b: Block, out: Element[]): void {
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

/** toSets sorts elements into their sets, keeping their order. */
function toSets (lists: Iterable<readonly Element[]>): SetElements {
  const sets = emptySets()
  for (const list of lists) for (const [set, text] of list) sets[set].push(text)
  return sets
}

/**
 * compileFilter turns a filter into the canonical elements of Warren's sets.
 * It throws WarrenError (code `bad_filter`, naming the field) on malformed input.
 */
export function compileFilter (filter: FilterRule[]): SetElements {
  trimSourceCache()
  // Elements come out in a fixed order (family and protocol, then address, then port)
  // without a global sort, which would cost more than the rest at 100,000 elements.
  const out: Element[] = []
  for (const g of collectGroups(filter)) {
    for (const b of disjointBlocks(groupBlocks(g))) blockElements(g, b, out)
  }
  return toSets([out])
}

/**
 * SingleEntry is what one single-address source contributes to its group: its ports, its
 * elements, and the rules that grant it (one entry per grant), so that when a rule goes,
 * the ports of the sources it named are the union over the rules left.
 */
interface SingleEntry { ports: Ports, elements: Element[], from: Grant[] }

function samePorts (a: Ports, b: Ports): boolean {
  if (a === b) return true
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i]![0] !== b[i]![0] || a[i]![1] !== b[i]![1]) return false
  return true
}

/**
 * Singles maps a group's single-address sources to their entries. A compile must stay valid
 * after the next one patched it (a refused update keeps it in force), and copying a map of
 * every peer for each patch would cost the size of the mesh. So a patched map shares `base`
 * with the one it patched and holds only the entries changed since in `over` (undefined for
 * a removed source); once `over` outgrows a sixteenth of `base`, it is folded into a new
 * base. A patch then costs what changed, plus now and then one copy of the map.
 */
class Singles {
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
interface CompiledGroup {
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
 * KeptRule is one rule of a compiled filter: a copy of it (the caller's rules may change
 * later), to compare the next filter's rules with, and its parse.
 */
interface KeptRule {
  srcs: readonly string[]
  protos: readonly number[]
  /** first0, last0, first1, last1, ... as written */
  ports: readonly number[]
  parsed: ParsedRule
}

/** keepRule copies a rule that parsed as `parsed`. */
function keepRule (rule: FilterRule, parsed: ParsedRule): KeptRule {
  const ports: number[] = []
  for (const p of rule.ports) ports.push(p.first, p.last)
  const protos = [...rule.protos]
  return { srcs: [...rule.srcs], protos, ports, parsed: { ...parsed, protos } }
}

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

/**
 * CompiledFilter is a filter's elements kept per group and per single-address source, so
 * that the next compile reuses what did not change and the diff between two compiles costs
 * what changed, not the size of the mesh (see compileIncremental and diffCompiled).
 * It is never changed after it is made, so an older one stays valid.
 */
export interface CompiledFilter {
  groups: Map<number, CompiledGroup>
  /** epoch: the cacheEpoch its range objects belong to */
  epoch: number
  /** rules: the filter's rules in order, to find which rules the next filter adds or drops */
  rules: readonly KeptRule[]
  /** serial numbers compiles, so that a patch can name the compile it patched without holding it */
  serial: number
  /**
   * patched: set when this compile patched the compile numbered `from`, naming the sources it
   * touched per group (a number, not the compile: a chain of compiles would never be freed)
   */
  patched?: { from: number, touched: Map<number, Set<AddrRange>> }
  /** sets materialises the elements (cached), as compileFilter would give them up to order */
  sets: () => SetElements
}

let compiles = 0

function compiledFilter (groups: Map<number, CompiledGroup>, rules: readonly KeptRule[], patched?: CompiledFilter['patched']): CompiledFilter {
  let sets: SetElements | undefined
  return {
    groups,
    epoch: cacheEpoch,
    rules,
    serial: ++compiles,
    ...(patched !== undefined ? { patched } : {}),
    sets: () => sets ??= toSets([...groups.values()].flatMap(g => [g.swept, ...[...g.singles.values()].map(s => s.elements)]))
  }
}

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

/**
 * singleEntry returns the entry of an isolated single source granted by `from`: `old` when
 * nothing changed, else a new entry that keeps old's elements while its ports are the same.
 */
function singleEntry (g: Pick<CompiledGroup, 'v6' | 'proto' | 'hasPorts'>, range: AddrRange, ports: Ports, from: Grant[], old: SingleEntry | undefined): SingleEntry {
  if (old !== undefined && samePorts(old.ports, ports)) return sameGrants(old.from, from) ? old : { ports: old.ports, elements: old.elements, from }
  const elements: Element[] = []
  blockElements(g, { lo: range.lo, hi: range.hi, ports, text: range.text! }, elements)
  return { ports, elements, from }
}

function sameGrants (a: Grant[], b: Grant[]): boolean {
  if (a === b) return true
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

/** PATCH_LIMIT: a change of more rules than this (or a sixteenth of them) compiles afresh. */
const PATCH_LIMIT = 64

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
function alignRules (filter: FilterRule[], kept: readonly KeptRule[], limit: number): { rules: Array<KeptRule | undefined>, added: number[], dropped: KeptRule[] } | undefined {
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
function editedRule (rule: FilterRule, i: number, k: KeptRule): { rule: KeptRule, lost: AddrRange[], gained: AddrRange[] } | undefined {
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
    const parsed = cachedSource(srcs[x]!, i, x) // checks it as a full compile would
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
    else for (const r of cachedSource(srcs[x]!, i, x)) gained.push(r)
  }
  const lost: AddrRange[] = []
  for (const [src, c] of left) for (let x = 0; x < c; x++) for (const r of cachedSource(src, i, 0)) lost.push(r)
  if (!inPlace) for (let j = 0; j < n; j++) for (const r of cachedSource(srcs[j]!, i, j)) ranges.push(r)
  const parsed: ParsedRule = { ports: k.parsed.ports, ranges, protos: k.parsed.protos, grant: k.parsed.grant }
  return { rule: { srcs: [...srcs], protos: k.protos, ports: k.ports, parsed }, lost, gained }
}

/**
 * patchCompiled compiles `filter` as a change of `prev` when only a few rules were added or
 * dropped (see alignRules), or only a few sources of a rule changed (see editedRule), and
 * the sources touched are single addresses in groups without range sources: then only
 * those sources' entries change, from the grants they hold. It returns undefined when that
 * does not hold, and the caller compiles afresh. It checks the added rules and sources as a
 * full compile would, with the same errors.
 */
function patchCompiled (filter: FilterRule[], prev: CompiledFilter): CompiledFilter | undefined {
  const aligned = alignRules(filter, prev.rules, Math.min(PATCH_LIMIT, Math.max(16, filter.length >> 4)))
  if (aligned === undefined) return undefined
  const { rules, added, dropped } = aligned
  // per group and touched source: the grants it loses and gains
  const changes = new Map<number, Map<AddrRange, { gone: Grant[], come: Grant[] }>>()
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
      const edit = editedRule(filter[i]!, i, k)
      if (edit === undefined) continue
      unpaired.delete(k)
      rules[i] = edit.rule
      noteRanges(edit.lost, k.parsed, 'gone')
      noteRanges(edit.gained, edit.rule.parsed, 'come')
      break
    }
    if (rules[i] === undefined) {
      rules[i] = keepRule(filter[i]!, parseRule(filter[i]!, i))
      noteRanges(rules[i]!.parsed.ranges, rules[i]!.parsed, 'come')
    }
  }
  for (const k of unpaired) noteRanges(k.parsed.ranges, k.parsed, 'gone')
  if (!simple) return undefined
  const groups = new Map(prev.groups)
  const touched = new Map<number, Set<AddrRange>>()
  for (const [key, sources] of changes) {
    const old = prev.groups.get(key)
    const proto = key & 255
    const g = { v6: key >= 256, proto, hasPorts: PORT_PROTOCOLS.includes(proto) }
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
          if (at < 0) return undefined // not from this compile: compile afresh rather than guess
          from.splice(at, 1)
        }
        ports = undefined
        for (const r of from) ports = ports === undefined ? (g.hasPorts ? r.ports : NO_PORTS) : g.hasPorts ? unionPorts(ports, r.ports) : ports
      }
      if (come.length > 0) {
        from = [...from, ...come]
        for (const r of come) ports = ports === undefined ? (g.hasPorts ? r.ports : NO_PORTS) : g.hasPorts ? unionPorts(ports, r.ports) : ports
      }
      updates.set(range, ports === undefined ? undefined : singleEntry(g, range, ports, from, was))
    }
    touched.set(key, new Set(sources.keys()))
    const singles = old?.singles.with(updates) ?? new Singles(new Map()).with(updates)
    const swept = old?.swept ?? []
    if (singles.size === 0 && swept.length === 0) { groups.delete(key); continue }
    const next: CompiledGroup = { ...g, hasRanges: false, singles, swept }
    if (old?.sweptTexts !== undefined) next.sweptTexts = old.sweptTexts
    groups.set(key, next)
  }
  return compiledFilter(groups, rules as KeptRule[], { from: prev.serial, touched })
}

/**
 * compileIncremental compiles a filter like compileFilter (same elements), reusing what it
 * can of `prev`, the compile of the previous filter. A single address that no range source
 * contains or touches is its own disjoint block: nothing merges with it (single addresses
 * never join each other), so its elements depend on its ports alone and are reused while
 * those stay. When only a few rules changed (see patchCompiled), only their sources are
 * looked at again.
 */
export function compileIncremental (filter: FilterRule[], prev?: CompiledFilter): CompiledFilter {
  trimSourceCache()
  if (prev !== undefined && prev.epoch !== cacheEpoch) prev = undefined
  if (prev !== undefined) {
    const patched = patchCompiled(filter, prev)
    if (patched !== undefined) return patched
  }
  const rules: KeptRule[] = []
  const groups = new Map<number, CompiledGroup>()
  for (const g of collectGroups(filter, rules)) {
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
  return compiledFilter(groups, rules)
}

/**
 * diffCompiled is diffSets(prev.sets(), next.sets()) in the cost of what changed: single
 * sources are compared by their ports and only the swept parts element by element; after
 * a patch of `prev`, only the sources the patch touched.
 */
export function diffCompiled (prev: CompiledFilter, next: CompiledFilter): SetDiff {
  const del: Element[] = []
  const add: Element[] = []
  const sweptTexts = (g: CompiledGroup): Set<string> => g.sweptTexts ??= new Set(g.swept.map(e => e[1]))
  const compareSingle = (was: SingleEntry | undefined, s: SingleEntry | undefined): void => {
    if (was === s || (was !== undefined && s !== undefined && was.elements === s.elements)) return
    if (was === undefined) { add.push(...s!.elements); return }
    if (s === undefined) { del.push(...was.elements); return }
    const had = new Set(was.elements.map(e => e[1]))
    const has = new Set(s.elements.map(e => e[1]))
    for (const e of was.elements) if (!has.has(e[1])) del.push(e)
    for (const e of s.elements) if (!had.has(e[1])) add.push(e)
  }
  if (next.patched?.from === prev.serial) {
    for (const [key, ranges] of next.patched.touched) {
      const old = prev.groups.get(key)?.singles
      const now = next.groups.get(key)?.singles
      for (const range of ranges) compareSingle(old?.get(range), now?.get(range))
    }
  } else {
    for (const [key, g] of next.groups) {
      const old = prev.groups.get(key)
      if (old === undefined) {
        add.push(...g.swept)
        for (const s of g.singles.values()) add.push(...s.elements)
        continue
      }
      for (const [range, s] of g.singles.entries()) compareSingle(old.singles.get(range), s)
      for (const [range, s] of old.singles.entries()) if (!g.singles.has(range)) del.push(...s.elements)
      if (g.swept.length > 0 || old.swept.length > 0) {
        const had = sweptTexts(old)
        const has = sweptTexts(g)
        for (const e of old.swept) if (!has.has(e[1])) del.push(e)
        for (const e of g.swept) if (!had.has(e[1])) add.push(e)
      }
    }
    for (const [key, old] of prev.groups) {
      if (next.groups.has(key)) continue
      del.push(...old.swept)
      for (const s of old.singles.values()) del.push(...s.elements)
    }
  }
  // A single that moved between the two parts shows up as deleted and added: cancel those.
  const added = new Set(add.map(e => e[1]))
  const deleted = new Set(del.map(e => e[1]))
  const diff: SetDiff = {
    del: toSets([del.filter(e => !added.has(e[1]))]),
    add: toSets([add.filter(e => !deleted.has(e[1]))]),
    size: 0
  }
  for (const name of SET_NAMES) diff.size += diff.del[name].length + diff.add[name].length
  return diff
}

/** emptySets is the elements of a filter that allows nothing. */
export function emptySets (): SetElements {
  return Object.fromEntries(SET_NAMES.map(n => [n, []])) as unknown as SetElements
}

// ---------- rendering nft scripts ----------

function setType (set: SetName): string {
  return `${setIsV6(set) ? 'ipv6_addr' : 'ipv4_addr'} . inet_proto${setHasPorts(set) ? ' . inet_service' : ''}`
}

/** checkRulesetOptions refuses names nft would misread, before anything reaches nft. */
export function checkRulesetOptions (o: RulesetOptions): void {
  if (!/^[A-Za-z][A-Za-z0-9_]{0,63}$/.test(o.table)) {
    throw new WarrenError('bad_firewall_config', `nftables table name "${o.table}" is not valid; use letters, digits and _ (for example warren)`, { field: 'table' })
  }
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(o.interfaceName)) {
    throw new WarrenError('bad_firewall_config', `interface name "${o.interfaceName}" is not valid; use 1-15 letters, digits, '_', '.' or '-' (for example warren0)`, { field: 'interfaceName' })
  }
}

/** FLOW_SET_SIZE caps each flow set: flows this node can have open with peers at once, per family. */
export const FLOW_SET_SIZE = 65536

/**
 * FLOW_TIMEOUTS say how long an idle flow's state lives, as conntrack's defaults do: a TCP
 * connection that sent only its SYN, one that is established, one that saw FIN or RST, a
 * datagram flow (UDP, DCCP, SCTP, UDP-Lite), an echo request.
 */
export const FLOW_TIMEOUTS = { tcpOpening: '2m', tcpOpen: '5d', tcpClosing: '2m', datagram: '3m', echo: '30s' } as const

/** DATAGRAM_PROTOCOLS are the port protocols tracked as datagram flows (all but TCP). */
const DATAGRAM_PROTOCOLS = PORT_PROTOCOLS.filter(p => p !== 6)

/**
 * flowChains renders one family's chains. Inbound packets from the mesh go through `in4` (or
 * `in6`), outbound packets to the mesh through `out4`; both dispatch on the protocol with one
 * verdict-map lookup.
 *
 * State is kept in dynamic sets, not in conntrack: loading conntrack makes the kernel track
 * every packet of the namespace (the WireGuard underlay included), which costs more than the
 * rest of the filter together (measured in bench/dataplane-bench). Instead:
 * - TCP: a bare SYN this node sends records the connection (peer . peer port . local port) in
 *   `tcp4`; the peer's packets in a recorded connection pass and keep it alive; FIN or RST
 *   (either way) moves it to `tcpend4`, which lets it close and then expire. Every other
 *   inbound TCP packet is judged by the policy, every packet, so a revocation cuts a
 *   connection the peer opened. Outbound data and ACKs, the bulk of the traffic, cost one
 *   flags test.
 * - Datagrams: inbound flows the policy allowed are recorded in `dgpeer4`; an outbound datagram
 *   that is not a reply to one of them opens a flow of this node in `dg4`, whose replies pass.
 *   A reply sent after a revocation finds the peer's flow in `dgpeer4` and opens nothing.
 * - ICMP: echo requests this node sends record (peer . id) in `echo4`, so their replies pass;
 *   ICMP errors pass, so that path MTU discovery and "port unreachable" work for the node's own
 *   flows (the kernel matches an error to its own sockets by the header it quotes); every other
 *   ICMP message is judged by the policy.
 * - Fragments after the first pass: they carry no ports, and without the first fragment,
 *   which is judged, the stack reassembles nothing.
 * A full flow set (FLOW_SET_SIZE) records no new flows until entries expire.
 */
function flowChains (fam: '4' | '6'): string[] {
  const ip = fam === '4' ? 'ip' : 'ip6'
  const icmp = fam === '4' ? 'icmp' : 'icmpv6'
  const icmpProto = fam === '4' ? 1 : 58
  const errors = fam === '4' ? 'destination-unreachable, time-exceeded, parameter-problem' : 'destination-unreachable, packet-too-big, time-exceeded, parameter-problem'
  const t = FLOW_TIMEOUTS
  const dgram = DATAGRAM_PROTOCOLS.map(p => `${p} : goto dgin${fam}`).join(', ')
  const dgramOut = DATAGRAM_PROTOCOLS.map(p => `${p} : goto dgout${fam}`).join(', ')
  // keys, seen from this node: peer address . peer port . local port
  const tcpIn = `${ip} saddr . th sport . th dport`
  const tcpOut = `${ip} daddr . th dport . th sport`
  const dgIn = `${ip} saddr . meta l4proto . th sport . th dport`
  const dgOut = `${ip} daddr . meta l4proto . th dport . th sport`
  const policy = (verdict: string): string[] => [
    `    ${ip} saddr . meta l4proto . th dport @allow${fam} ${verdict}`,
    `    ${ip} saddr . meta l4proto @allow${fam}p ${verdict}`,
    `    ${ip} saddr . meta l4proto . th dport @allow${fam}i ${verdict}`,
    `    ${ip} saddr . meta l4proto @allow${fam}pi ${verdict}`
  ]
  return [
    `  chain in${fam} {`,
    // A fragment after the first has no ports to judge; the first one, which carries them,
    // is judged, and the stack reassembles nothing without it (overlaps are discarded).
    fam === '4' ? '    ip frag-off & 0x1fff != 0 accept' : '    frag frag-off != 0 accept',
    `    meta l4proto vmap { 6 : goto tcpin${fam}, ${dgram}, ${icmpProto} : goto icmpin${fam} }`,
    `    ${ip} saddr . meta l4proto @allow${fam}p accept`,
    `    ${ip} saddr . meta l4proto @allow${fam}pi accept`,
    '    drop',
    '  }',
    `  chain tcpin${fam} {`,
    `    tcp flags & (syn | ack) != syn ${tcpIn} @tcp${fam} goto tcpreply${fam}`,
    ...policy('accept'),
    '    drop',
    '  }',
    `  chain tcpreply${fam} {`,
    `    tcp flags & (fin | rst) != 0 update @tcpend${fam} { ${tcpIn} timeout ${t.tcpClosing} } update @tcp${fam} { ${tcpIn} timeout ${t.tcpClosing} } accept`,
    `    ${tcpIn} @tcpend${fam} accept`,
    `    update @tcp${fam} { ${tcpIn} timeout ${t.tcpOpen} } accept`,
    '  }',
    `  chain dgin${fam} {`,
    `    ${dgIn} @dg${fam} update @dg${fam} { ${dgIn} timeout ${t.datagram} } accept`,
    ...policy(`goto dgok${fam}`),
    '    drop',
    '  }',
    `  chain dgok${fam} {`,
    `    update @dgpeer${fam} { ${dgIn} timeout ${t.datagram} }`,
    '    accept',
    '  }',
    `  chain icmpin${fam} {`,
    `    ${icmp} type { ${errors} } accept`,
    `    ${icmp} type echo-reply ${ip} saddr . ${icmp} id @echo${fam} accept`,
    `    ${ip} saddr . meta l4proto @allow${fam}p accept`,
    `    ${ip} saddr . meta l4proto @allow${fam}pi accept`,
    '    drop',
    '  }',
    `  chain out${fam} {`,
    `    meta l4proto vmap { 6 : goto tcpout${fam}, ${dgramOut}, ${icmpProto} : goto icmpout${fam} }`,
    '  }',
    `  chain tcpout${fam} {`,
    // Most packets carry data or ACKs: they change no state (the replies keep a flow alive).
    '    tcp flags & (syn | fin | rst) == 0 return',
    `    tcp flags & (syn | ack) == syn update @tcp${fam} { ${tcpOut} timeout ${t.tcpOpening} } goto tcpsyn${fam}`,
    `    tcp flags & (fin | rst) != 0 ${tcpOut} @tcp${fam} update @tcpend${fam} { ${tcpOut} timeout ${t.tcpClosing} } update @tcp${fam} { ${tcpOut} timeout ${t.tcpClosing} }`,
    '  }',
    `  chain tcpsyn${fam} {`,
    // a new connection on the 4-tuple of one that closed lately starts afresh
    `    delete @tcpend${fam} { ${tcpOut} }`,
    '  }',
    `  chain dgout${fam} {`,
    `    ${dgOut} @dgpeer${fam} return`,
    `    update @dg${fam} { ${dgOut} timeout ${t.datagram} }`,
    '  }',
    `  chain icmpout${fam} {`,
    `    ${icmp} type echo-request update @echo${fam} { ${ip} daddr . ${icmp} id timeout ${t.echo} }`,
    '  }'
  ]
}

/** flowSets renders one family's dynamic sets of flow state (see flowChains). */
function flowSets (fam: '4' | '6'): string[] {
  const addr = fam === '4' ? 'ipv4_addr' : 'ipv6_addr'
  const dyn = `flags dynamic,timeout; size ${FLOW_SET_SIZE};`
  return [
    `  set tcp${fam} { type ${addr} . inet_service . inet_service; ${dyn} }`,
    `  set tcpend${fam} { type ${addr} . inet_service . inet_service; ${dyn} }`,
    `  set dg${fam} { type ${addr} . inet_proto . inet_service . inet_service; ${dyn} }`,
    `  set dgpeer${fam} { type ${addr} . inet_proto . inet_service . inet_service; ${dyn} }`,
    `  set echo${fam} { typeof ${fam === '4' ? 'ip daddr . icmp id' : 'ip6 daddr . icmpv6 id'}; ${dyn} }`
  ]
}

/**
 * renderTableBody renders `table inet <name> { ... }` with its sets, elements and chains.
 * Only packets that arrive on, or leave by, the mesh interface enter Warren's chains; those
 * that arrive are judged (default drop), those that leave only record flow state. The base
 * chains run at priority filter - 10, before the host's usual filter rules; their `accept`
 * only ends Warren's verdict, so the host's own rules still judge the packet after.
 */
export function renderTableBody (sets: SetElements, o: RulesetOptions): string {
  const lines = [`table inet ${o.table} {`]
  for (const name of SET_NAMES) {
    lines.push(`  set ${name} {`, `    type ${setType(name)}`)
    if (setIsInterval(name)) lines.push('    flags interval')
    if (sets[name].length > 0) lines.push(`    elements = {\n      ${sets[name].join(',\n      ')}\n    }`)
    lines.push('  }')
  }
  lines.push(...flowSets('4'), ...flowSets('6'))
  lines.push(
    '  chain mesh {',
    '    meta nfproto vmap { ipv4 : goto in4, ipv6 : goto in6 }',
    '    drop',
    '  }',
    '  chain meshout {',
    '    meta nfproto vmap { ipv4 : goto out4, ipv6 : goto out6 }',
    '  }',
    ...flowChains('4'), ...flowChains('6'))
  const judge = `    iifname "${o.interfaceName}" jump mesh comment "${RULESET_MARKER}"`
  const record = `    oifname "${o.interfaceName}" jump meshout`
  for (const [hook, rules] of [['input', [judge]], ['forward', [judge, record]], ['output', [record]]] as const) {
    lines.push(
      `  chain ${hook} {`,
      `    type filter hook ${hook} priority filter - 10; policy accept;`,
      ...rules,
      '  }')
  }
  lines.push('}')
  return lines.join('\n') + '\n'
}

/** renderTableScript replaces the table atomically: create if missing, delete, define anew. */
export function renderTableScript (sets: SetElements, o: RulesetOptions): string {
  return `add table inet ${o.table}\ndelete table inet ${o.table}\n${renderTableBody(sets, o)}`
}

/** renderDeleteScript removes the table if it exists (and nothing else) in one transaction. */
export function renderDeleteScript (table: string): string {
  return `add table inet ${table}\ndelete table inet ${table}\n`
}

/** SetDiff lists elements to delete and add, per set. */
export interface SetDiff { del: SetElements, add: SetElements, size: number }

/** diffSets compares two canonical element lists. */
export function diffSets (prev: SetElements, next: SetElements): SetDiff {
  const del = emptySets()
  const add = emptySets()
  let size = 0
  for (const name of SET_NAMES) {
    const before = new Set(prev[name])
    const after = new Set(next[name])
    del[name] = prev[name].filter(e => !after.has(e))
    add[name] = next[name].filter(e => !before.has(e))
    size += del[name].length + add[name].length
  }
  return { del, add, size }
}

/**
 * renderElementScript renders a diff as element commands only, deletions first so that a
 * merged element can replace the ones it covers in the same transaction; '' when empty.
 */
export function renderElementScript (diff: SetDiff, table: string): string {
  const lines: string[] = []
  for (const [verb, part] of [['delete', diff.del], ['add', diff.add]] as const) {
    for (const name of SET_NAMES) {
      if (part[name].length > 0) lines.push(`${verb} element inet ${table} ${name} { ${part[name].join(', ')} }`)
    }
  }
  return lines.length === 0 ? '' : lines.join('\n') + '\n'
}

// ---------- reading elements back ----------

/** ParsedElement is one set element as ranges: what a lookup compares a packet against. */
export interface ParsedElement { v6: boolean, lo: bigint, hi: bigint, proto: number, ports?: [number, number] }

/** parseElement reads one canonical element text of the given set. */
export function parseElement (set: SetName, text: string): ParsedElement {
  const parts = text.split(' . ')
  const v6 = setIsV6(set)
  const withPorts = setHasPorts(set)
  if (parts.length !== (withPorts ? 3 : 2)) throw new Error(`element "${text}" does not fit set ${set}`)
  const [addr, proto, port] = parts as [string, string, string | undefined]
  let range: AddrRange
  const dash = addr.indexOf('-')
  if (dash >= 0) {
    const lo = parseAddress(addr.slice(0, dash))
    const hi = parseAddress(addr.slice(dash + 1))
    if (lo === undefined || hi === undefined) throw new Error(`element "${text}": bad address range`)
    range = { v6: lo.v6, lo: lo.n, hi: hi.n }
  } else {
    range = parseSource(addr, set)[0]!
  }
  if (range.v6 !== v6) throw new Error(`element "${text}" has the wrong address family for set ${set}`)
  const el: ParsedElement = { v6, lo: range.lo, hi: range.hi, proto: Number(proto) }
  if (port !== undefined) {
    const [a, b] = port.split('-')
    el.ports = [Number(a), Number(b ?? a)]
  }
  return el
}

/** elementMatches is one set lookup: does this element hold the packet's key? */
export function elementMatches (el: ParsedElement, v6: boolean, src: bigint, proto: number, dport?: number): boolean {
  if (el.v6 !== v6 || src < el.lo || src > el.hi || el.proto !== proto) return false
  if (el.ports === undefined) return true
  return dport !== undefined && dport >= el.ports[0] && dport <= el.ports[1]
}

/** KernelTable is what a read-back of our table says: the judged interface and the elements. */
export interface KernelTable { interfaceName?: string, marked: boolean, sets: SetElements }

type JsonValue = string | number | { prefix?: { addr: string, len: number }, range?: [JsonValue, JsonValue] }

function jsonAddr (v: JsonValue, v6: boolean): AddrRange {
  if (typeof v === 'string') return parseSource(v, 'kernel element')[0]!
  if (v !== null && typeof v === 'object' && v.prefix !== undefined) return parseSource(`${v.prefix.addr}/${v.prefix.len}`, 'kernel element')[0]!
  if (v !== null && typeof v === 'object' && v.range !== undefined) {
    const lo = jsonAddr(v.range[0], v6)
    const hi = jsonAddr(v.range[1], v6)
    return { v6: lo.v6, lo: lo.lo, hi: hi.hi }
  }
  throw new Error(`unexpected address in kernel set element: ${JSON.stringify(v)}`)
}

function jsonPort (v: JsonValue): string {
  if (typeof v === 'number') return String(v)
  if (v !== null && typeof v === 'object' && v.range !== undefined) {
    const [a, b] = v.range
    return a === b ? String(a) : `${String(a)}-${String(b)}`
  }
  throw new Error(`unexpected port in kernel set element: ${JSON.stringify(v)}`)
}

/**
 * parseKernelTable reads `nft -j -n list table inet <name>` output into canonical elements,
 * so they compare equal to compileFilter's output when the kernel holds what we applied.
 */
export function parseKernelTable (json: string): KernelTable {
  const doc = JSON.parse(json) as { nftables?: Array<Record<string, any>> }
  const out: KernelTable = { marked: false, sets: emptySets() }
  for (const item of doc.nftables ?? []) {
    if (item.set !== undefined && (SET_NAMES as readonly string[]).includes(item.set.name)) {
      const name = item.set.name as SetName
      const v6 = setIsV6(name)
      const texts: string[] = []
      for (const raw of item.set.elem ?? []) {
        const el = raw?.elem?.val ?? raw
        const concat = el?.concat as JsonValue[] | undefined
        if (!Array.isArray(concat)) throw new Error(`unexpected element in set ${name}: ${JSON.stringify(raw)}`)
        const a = jsonAddr(concat[0]!, v6)
        const fields = [formatAddrRange(a.v6, a.lo, a.hi), String(concat[1])]
        if (concat.length === 3) fields.push(jsonPort(concat[2]!))
        texts.push(fields.join(' . '))
      }
      out.sets[name] = texts
    }
    if (item.rule !== undefined && item.rule.chain === 'input') {
      if (item.rule.comment === RULESET_MARKER) out.marked = true
      for (const e of item.rule.expr ?? []) {
        if (e?.match?.left?.meta?.key === 'iifname' && typeof e.match.right === 'string') out.interfaceName = e.match.right
      }
    }
  }
  return out
}

// ---------- the reference evaluation ----------

/**
 * filterAllows evaluates a filter directly, rule by rule: is this packet allowed in?
 * It is the specification that the generated ruleset must match exactly.
 */
export function filterAllows (filter: FilterRule[], packet: Packet): boolean {
  const src = parseAddress(packet.src)
  if (src === undefined) return false
  const hasPorts = PORT_PROTOCOLS.includes(packet.proto)
  return filter.some((rule, i) => {
    if (!rule.protos.includes(packet.proto)) return false
    const fromSource = rule.srcs.some((s, j) => parseSource(s, `filter[${i}].srcs[${j}]`).some(r => r.v6 === src.v6 && src.n >= r.lo && src.n <= r.hi))
    if (!fromSource) return false
    if (!hasPorts) return true
    return packet.dport !== undefined && rule.ports.some(p => packet.dport! >= p.first && packet.dport! <= p.last)
  })
}

/** packetSource parses a packet's source address for the tracers. */
export function packetSource (src: string): { v6: boolean, n: bigint } | undefined {
  return parseAddress(src)
}
