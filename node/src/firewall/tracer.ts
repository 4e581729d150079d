/**
 * tracer runs a packet through the ruleset Warren generates (same chain order, same set
 * lookups) without a kernel, reading the elements from their nft text, so that the text is
 * what tests hold to the filter's meaning (protocol's filterAllows).
 */
import { IpProto } from '@warren/protocol'
import { packetSource, parseAddrText } from './addresses.js'
import { SET_NAMES, setHasPorts, setIsV6, type SetElements, type SetName } from './set-elements.js'
import { egressElements } from './shared-port-rules.js'
import type { SharedPortRules } from './types.js'
import { DATAGRAM_PROTOCOLS, type RejectLimit } from './flow-chains.js'

/** ParsedElement is one set element as ranges: what a lookup compares a packet against. */
export interface ParsedElement { v6: boolean, lo: bigint, hi: bigint, proto: number, ports?: [number, number] }

/** parseElement reads one canonical element text of the given set. */
export function parseElement (set: SetName, text: string): ParsedElement {
  const parts = text.split(' . ')
  const v6 = setIsV6(set)
  const withPorts = setHasPorts(set)
  if (parts.length !== (withPorts ? 3 : 2)) throw new Error(`element "${text}" does not fit set ${set}`)
  const [addr, proto, port] = parts as [string, string, string | undefined]
  const range = parseAddrText(addr, `element "${text}"`)
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


/** TracePacket is a packet arriving at the node, with what the flow state says of it. */
export interface TracePacket {
  src: string
  proto: number
  dport?: number
  /** interface the packet came in on */
  iif: string
  /**
   * which side opened the flow the packet belongs to: `peer` (the default; judged by the
   * policy, every packet) or `node` (a reply in a flow this node opened, which the flow
   * sets let through)
   */
  flow?: 'peer' | 'node'
  /** ICMP/ICMPv6 type of an ICMP packet; an echo request by default */
  icmpType?: number
  /**
   * for TCP: true for a segment that opens no connection (it carries ACK, as every segment
   * of a connection after the SYN does, or FIN or RST); by default the packet is a bare SYN
   */
  stray?: boolean
  /** when the packet arrives, in ms from the start of a burst (traceBurst); 0 by default */
  at?: number
}

/**
 * Verdict is what the table does with a packet: lets it in, drops it, rejects it (answers
 * with an ICMP "administratively prohibited"), or leaves it alone (not from the mesh).
 */
export type Verdict = 'accept' | 'drop' | 'reject' | 'untouched'

/**
 * RulesetState is an in-memory Warren table: the judged interface, the set elements, the
 * shared-port rules, and the limit of the rule that rejects forbidden new flows (absent
 * when the table has no such rule, and then it drops them).
 */
export interface RulesetState { interfaceName: string, sets: SetElements, sharedPort?: SharedPortRules, rejectLimit?: RejectLimit }

/** ICMP_ERRORS are the ICMP (v4) and ICMPv6 error types that pass for the node's own flows. */
const ICMP_ERRORS: Record<number, readonly number[]> = { 1: [3, 11, 12], 58: [1, 2, 3, 4] }
const ECHO_REPLY: Record<number, number> = { 1: 0, 58: 129 }

/** RejectBucket is the kernel's `limit` as a token bucket: take says whether a reject at `at` ms is within it. */
export interface RejectBucket { take: (at: number) => boolean }

/** createRejectBucket starts a full bucket, as the kernel's limit is when its rule is created. */
export function createRejectBucket (limit: RejectLimit): RejectBucket {
  let tokens = limit.burst
  let last = 0
  return {
    take (at) {
      tokens = Math.min(limit.burst, tokens + Math.max(0, at - last) * limit.rate / 1000)
      last = Math.max(last, at)
      if (tokens < 1) return false
      tokens--
      return true
    }
  }
}

/**
 * traceRuleset follows the generated chains: not from the mesh interface -> untouched;
 * a packet of a flow this node opened -> accept; an ICMP error -> accept; then the policy's
 * set lookups; else a bare TCP SYN or a datagram is rejected (when the table rejects, and
 * while `bucket` allows: without one, every reject is within the limit), and anything else
 * dropped. Elements are parsed from their nft text, so the text is what gets tested. (How
 * the kernel's flow sets record flows is tested in a real namespace.)
 */
export function traceRuleset (state: RulesetState | undefined, p: TracePacket, bucket?: RejectBucket): Verdict {
  const verdict = judge(state, p)
  if (verdict !== 'reject' || bucket === undefined || bucket.take(p.at ?? 0)) return verdict
  return 'drop'
}

/** traceBurst judges packets in order, their rejects sharing one bucket as the kernel's limit rule does. */
export function traceBurst (state: RulesetState | undefined, packets: TracePacket[]): Verdict[] {
  const bucket = state?.rejectLimit !== undefined ? createRejectBucket(state.rejectLimit) : undefined
  return packets.map(p => traceRuleset(state, p, bucket))
}

function judge (state: RulesetState | undefined, p: TracePacket): Verdict {
  if (state === undefined || p.iif !== state.interfaceName) return 'untouched'
  const src = packetSource(p.src)
  if (src === undefined) return 'drop'
  // ICMP of the packet's own family goes to the ICMP chain; anything else to the lookups
  const icmp = p.proto === (src.v6 ? 58 : 1)
  if (p.flow === 'node' && (!icmp || p.icmpType === ECHO_REPLY[p.proto])) return 'accept'
  if (icmp && p.icmpType !== undefined && ICMP_ERRORS[p.proto]!.includes(p.icmpType)) return 'accept'
  const fam = src.v6 ? '6' : '4'
  const lookup = (set: string): boolean => parsed(set as SetName, state.sets[set as SetName]).some(el => elementMatches(el, src.v6, src.n, p.proto, p.dport))
  // Port sets are keyed by `th dport`; packets whose header has no port simply miss them.
  for (const set of [`allow${fam}`, `allow${fam}p`, `allow${fam}i`, `allow${fam}pi`]) {
    if ((p.dport !== undefined || !setHasPorts(set as SetName)) && lookup(set)) return 'accept'
  }
  const opens = (p.proto === IpProto.TCP && p.stray !== true) || DATAGRAM_PROTOCOLS.includes(p.proto)
  return opens && state.rejectLimit !== undefined ? 'reject' : 'drop'
}

const parseCache = new WeakMap<string[], ParsedElement[]>()
function parsed (set: SetName, texts: string[]): ParsedElement[] {
  let els = parseCache.get(texts)
  if (els === undefined) parseCache.set(texts, els = texts.map(t => parseElement(set, t)))
  return els
}

/** dumpRuleset renders a state as sorted lines, for comparing in tests. */
export function dumpRuleset (state: RulesetState | undefined): string {
  if (state === undefined) return ''
  const lines = [`iifname ${state.interfaceName}`]
  for (const set of SET_NAMES) for (const e of state.sets[set]) lines.push(`${set} ${e}`)
  const sp = state.sharedPort
  if (sp !== undefined) {
    lines.push(`shared wg ${sp.wgPort} control ${sp.controlAddress}:${sp.controlPort}${sp.controlAddress6 !== undefined ? ` ${sp.controlAddress6}` : ''}`)
    for (const e of egressElements(sp.egress)) lines.push(`egress4 ${e}`)
    for (const e of egressElements(sp.egress6 ?? {})) lines.push(`egress6 ${e}`)
  }
  return lines.sort().join('\n')
}
