import { parseIpAddress, parseIpPrefix, prefixContains, prefixRange, formatIpAddress, type FilterRule, type IpPrefix } from '@warren/protocol'
import { addresses } from './access-set.js'
import type { TailscaleRule } from './corpus.js'

/**
 * A capability set is what a node's capability rules give, per own address and
 * capability: for each piece of the source space, the values a caller there holds, in a
 * canonical form that does not depend on how the rules were written: the source space is
 * cut at every range boundary, each piece carries the sorted list of its values (an empty
 * list still holds the capability), and equal neighbours are joined. Values compare as
 * JSON with sorted keys; their order between grants is not compared, since Tailscale
 * sends one rule per grant and the whois merges them.
 */

/** CapSet maps `destination capability` to the canonical text of who holds it with what. */
export type CapSet = Map<string, string>

interface Piece { first: bigint, last: bigint, values: string[] }

class Builder {
  private readonly pieces = new Map<string, { family: 4 | 6, pieces: Piece[] }>()

  add (dst: IpPrefix, cap: string, src: { family: 4 | 6, first: bigint, last: bigint }, values: readonly unknown[]): void {
    if (src.family !== dst.family) return
    const key = `${formatIpAddress(dst.family, dst.network)} ${cap}`
    let entry = this.pieces.get(key)
    if (entry === undefined) { entry = { family: dst.family, pieces: [] }; this.pieces.set(key, entry) }
    entry.pieces.push({ first: src.first, last: src.last, values: values.map(stableJson) })
  }

  build (): CapSet {
    const out: CapSet = new Map()
    for (const [key, { family, pieces }] of [...this.pieces].sort(([a], [b]) => a < b ? -1 : 1)) out.set(key, canonical(family, pieces))
    return out
  }
}

function canonical (family: 4 | 6, pieces: Piece[]): string {
  const cuts = [...new Set(pieces.flatMap(p => [p.first, p.last + 1n]))].sort((a, b) => a < b ? -1 : a > b ? 1 : 0)
  const out: Array<{ first: bigint, last: bigint, values: string }> = []
  for (let i = 0; i + 1 < cuts.length; i++) {
    const first = cuts[i]!
    const last = cuts[i + 1]! - 1n
    const covering = pieces.filter(p => p.first <= first && p.last >= last)
    if (covering.length === 0) continue
    const values = `[${covering.flatMap(p => p.values).sort().join(',')}]`
    const prev = out[out.length - 1]
    if (prev !== undefined && prev.last + 1n === first && prev.values === values) prev.last = last
    else out.push({ first, last, values })
  }
  return out.map(p => `${formatIpAddress(family, p.first)}-${formatIpAddress(family, p.last)}:${p.values}`).join(' ')
}

/** stableJson writes a value with object keys sorted, so equal values are equal text. */
function stableJson (v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableJson).join(',')}]`
  if (v !== null && typeof v === 'object') {
    return `{${Object.keys(v).sort().map(k => `${JSON.stringify(k)}:${stableJson((v as Record<string, unknown>)[k])}`).join(',')}}`
  }
  return JSON.stringify(v)
}

/** sourceRange reads one Tailscale source: `*`, an address, a prefix, or `first-last`. */
function sourceRanges (text: string): Array<{ family: 4 | 6, first: bigint, last: bigint }> {
  if (text === '*') return ['0.0.0.0/0', '::/0'].map(t => ofPrefix(parseIpPrefix(t)!))
  const dash = text.indexOf('-')
  if (dash > 0) {
    const a = parseIpAddress(text.slice(0, dash))
    const b = parseIpAddress(text.slice(dash + 1))
    if (a === undefined || b === undefined || a.family !== b.family) throw new Error(`not an address range: ${text}`)
    return [{ family: a.family, first: a.network, last: b.network }]
  }
  const p = parseIpPrefix(text) ?? parseIpAddress(text)
  if (p === undefined) throw new Error(`not an address or prefix: ${text}`)
  return [ofPrefix(p)]
}

function ofPrefix (p: IpPrefix): { family: 4 | 6, first: bigint, last: bigint } {
  return { family: p.family, ...prefixRange(p) }
}

/** tailscaleCaps reads the CapGrant entries of a node's Tailscale filter rules against the node's addresses. */
export function tailscaleCaps (rules: readonly TailscaleRule[], nodeIps: readonly string[]): CapSet {
  const own = addresses(nodeIps)
  const b = new Builder()
  for (const rule of rules) {
    const srcs = (rule.SrcIPs ?? []).flatMap(sourceRanges)
    for (const grant of rule.CapGrant ?? []) {
      const dsts = grant.Dsts.map(d => parseIpPrefix(d) ?? parseIpAddress(d)).filter(d => d !== undefined)
      for (const a of own.filter(a => dsts.some(d => prefixContains(d, a)))) {
        for (const [cap, values] of Object.entries(grant.CapMap)) for (const s of srcs) b.add(a, cap, s, values ?? [])
      }
    }
  }
  return b.build()
}

/** warrenCaps reads the capability rules (those with `caps`) of a Warren node filter; each applies to each of the node's addresses. */
export function warrenCaps (filter: readonly FilterRule[], nodeIps: readonly string[]): CapSet {
  const own = addresses(nodeIps)
  const b = new Builder()
  for (const rule of filter) {
    if (rule.caps === undefined) continue
    const srcs = rule.srcs.flatMap(sourceRanges)
    for (const a of own) for (const [cap, values] of Object.entries(rule.caps)) for (const s of srcs) b.add(a, cap, s, values)
  }
  return b.build()
}

/** capDifferences lists, per destination and capability, where two capability sets differ. */
export function capDifferences (want: CapSet, got: CapSet): string[] {
  const out: string[] = []
  for (const key of [...new Set([...want.keys(), ...got.keys()])].sort()) {
    const w = want.get(key) ?? ''
    const g = got.get(key) ?? ''
    if (w !== g) out.push(`caps on ${key}: tailscale gives [${w}], warren gives [${g}]`)
  }
  return out
}
