import { formatIpAddress, parseIpAddress, parseIpPrefix, prefixContains, prefixRange, protocolHasPorts, protocolName, type FilterRule, type IpPrefix } from '@warren/protocol'
import type { TailscaleFilterRule } from './corpus.js'

/**
 * An access set is what a node's inbound filter lets in, as tuples (source, destination,
 * protocol, port), in a canonical form that does not depend on how the filter was
 * written: per destination address and protocol, the sources are split at every range
 * boundary and each piece carries its merged port ranges; equal neighbours are joined.
 * Two filters allow the same packets exactly when their canonical forms are equal.
 *
 * Only destinations that are the node's own addresses are compared here; a packet can
 * only go from an address of one family to an address of the same family, so sources
 * of the other family are dropped.
 */

/** Rect is a block of tuples: a source range and a port range, for one destination and protocol. */
export interface Rect { srcFirst: bigint, srcLast: bigint, portFirst: number, portLast: number }

/** AccessSet maps `destination proto` to the canonical text of what it lets in. */
export type AccessSet = Map<string, string>

export const ALL_PORTS = { first: 0, last: 65535 }
export const DEFAULT_TAILSCALE_PROTOS = [6, 17, 1, 58]

class Builder {
  private readonly rects = new Map<string, { family: 4 | 6, rects: Rect[] }>()

  add (dst: IpPrefix, proto: number, src: IpPrefix, ports: { first: number, last: number }): void {
    if (src.family !== dst.family) return
    const key = `${formatIpAddress(dst.family, dst.network)} ${protocolName(proto)}`
    let entry = this.rects.get(key)
    if (entry === undefined) { entry = { family: dst.family, rects: [] }; this.rects.set(key, entry) }
    const { first, last } = prefixRange(src)
    const p = protocolHasPorts(proto) ? ports : ALL_PORTS
    entry.rects.push({ srcFirst: first, srcLast: last, portFirst: p.first, portLast: p.last })
  }

  build (): AccessSet {
    const out: AccessSet = new Map()
    for (const [key, { family, rects }] of [...this.rects].sort(([a], [b]) => a < b ? -1 : 1)) out.set(key, canonical(family, rects))
    return out
  }
}

/** canonical writes a union of rectangles as `from-to:ports ...`, the same for the same union. */
export function canonical (family: 4 | 6, rects: Rect[]): string {
  const cuts = [...new Set(rects.flatMap(r => [r.srcFirst, r.srcLast + 1n]))].sort((a, b) => a < b ? -1 : a > b ? 1 : 0)
  const pieces: Array<{ first: bigint, last: bigint, ports: string }> = []
  for (let i = 0; i + 1 < cuts.length; i++) {
    const first = cuts[i]!
    const last = cuts[i + 1]! - 1n
    const ports = mergePorts(rects.filter(r => r.srcFirst <= first && r.srcLast >= last))
    if (ports === '') continue
    const prev = pieces[pieces.length - 1]
    if (prev !== undefined && prev.last + 1n === first && prev.ports === ports) prev.last = last
    else pieces.push({ first, last, ports })
  }
  return pieces.map(p => `${formatIpAddress(family, p.first)}-${formatIpAddress(family, p.last)}:${p.ports}`).join(' ')
}

function mergePorts (rects: Rect[]): string {
  const sorted = rects.map(r => [r.portFirst, r.portLast] as const).sort((a, b) => a[0] - b[0] || a[1] - b[1])
  const out: Array<[number, number]> = []
  for (const [f, l] of sorted) {
    const last = out[out.length - 1]
    if (last !== undefined && f <= last[1] + 1) last[1] = Math.max(last[1], l)
    else out.push([f, l])
  }
  return out.map(([f, l]) => f === l ? `${f}` : `${f}-${l}`).join(',')
}

export function prefix (text: string): IpPrefix[] {
  if (text === '*') return [parseIpPrefix('0.0.0.0/0')!, parseIpPrefix('::/0')!]
  const p = parseIpPrefix(text)
  if (p === undefined) throw new Error(`not an address or prefix: ${text}`)
  return [p]
}

/** addresses reads a node's addresses. */
export function addresses (ips: readonly string[]): IpPrefix[] {
  return ips.map(ip => {
    const a = parseIpAddress(ip)
    if (a === undefined) throw new Error(`not an address: ${ip}`)
    return a
  })
}

/** tailscaleAccess reads what a node's Tailscale packet filter lets in to the node's own addresses (routed traffic: routed-access.ts). */
export function tailscaleAccess (filter: readonly TailscaleFilterRule[], nodeIps: readonly string[]): AccessSet {
  const own = addresses(nodeIps)
  const b = new Builder()
  for (const rule of filter) {
    const srcs = (rule.Srcs ?? []).flatMap(prefix)
    const protos = rule.IPProto === null || rule.IPProto.length === 0 ? DEFAULT_TAILSCALE_PROTOS : rule.IPProto
    for (const d of rule.Dsts ?? []) {
      for (const net of prefix(d.Net)) {
        const mine = own.filter(a => prefixContains(net, a))
        for (const a of mine) for (const proto of protos) for (const s of srcs) b.add(a, proto, s, { first: d.Ports.First, last: d.Ports.Last })
      }
    }
  }
  return b.build()
}

/**
 * warrenAccess reads a Warren node filter: each inbound rule applies to each of the
 * node's addresses. A subnet router's forward rules (with destinations of their own,
 * `dsts`) are compared in routed-access.ts; they are left out here.
 */
export function warrenAccess (filter: readonly FilterRule[], nodeIps: readonly string[]): AccessSet {
  const own = addresses(nodeIps)
  const b = new Builder()
  for (const rule of filter) {
    if ((rule as { dsts?: unknown }).dsts !== undefined) continue
    const srcs = rule.srcs.flatMap(prefix)
    for (const a of own) {
      for (const proto of rule.protos) for (const s of srcs) for (const p of rule.ports) b.add(a, proto, s, p)
    }
  }
  return b.build()
}

/** accessDifferences lists, per destination and protocol, where two access sets differ. */
export function accessDifferences (want: AccessSet, got: AccessSet): string[] {
  const out: string[] = []
  for (const key of [...new Set([...want.keys(), ...got.keys()])].sort()) {
    const w = want.get(key) ?? ''
    const g = got.get(key) ?? ''
    if (w !== g) out.push(`to ${key}: tailscale allows [${w}], warren allows [${g}]`)
  }
  return out
}
