import { isIP } from 'node:net'
import { parseHostPort, type Node, type RelayInfo } from '@warren/protocol'
import type { IpFamily } from '@warren/relay'

/**
 * Both sides of a kernel-relayed pair bind over one IP family: nftables rewrites a
 * packet's addresses within its family and cannot turn IPv4 into IPv6. These functions
 * pick that family per pair from what the controller knows: the families of the relay's
 * endpoints and of the endpoints each node reported.
 */

const BOTH: ReadonlySet<IpFamily> = new Set([4, 6])

/** familiesOfHost is an address's family; a name may resolve to either. */
function familiesOfHost (host: string): IpFamily[] {
  const f = isIP(host)
  return f === 4 || f === 6 ? [f] : [4, 6]
}

/** onLinkOnly says an IPv6 address cannot reach a public relay: link-local (fe80::/10) or unique local (fc00::/7). */
function onLinkOnly (address: string): boolean {
  return /^(fe[89ab]|f[cd])/i.test(address)
}

/** relayFamilies are the families nodes can reach a relay's UDP side over (none without one). */
export function relayFamilies (info: RelayInfo): Set<IpFamily> {
  const out = new Set<IpFamily>()
  for (const e of [info.udp, info.udp6]) {
    if (e !== undefined) for (const f of familiesOfHost(parseHostPort(e, 'relay endpoint').host)) out.add(f)
  }
  return out
}

/**
 * nodeFamilies are the families of a node's reported endpoints that can reach a public
 * relay; a node that reported none yet might use either.
 */
export function nodeFamilies (n: Node): ReadonlySet<IpFamily> {
  const out = new Set<IpFamily>()
  for (const e of n.endpoints) {
    let host: string
    try { host = parseHostPort(e, 'endpoint').host } catch { continue }
    const f = isIP(host)
    if (f === 4) out.add(4)
    if (f === 6 && !onLinkOnly(host)) out.add(6)
  }
  return out.size === 0 ? BOTH : out
}

/**
 * pairFamily is the family a pair binds to `relay` over: IPv4 when the relay and both
 * nodes have it (nodes try IPv4 first), else IPv6, else undefined (no common family).
 */
export function pairFamily (relay: RelayInfo, a: Node, b: Node): IpFamily | undefined {
  const r = relayFamilies(relay)
  const x = nodeFamilies(a)
  const y = nodeFamilies(b)
  return ([4, 6] as const).find(f => r.has(f) && x.has(f) && y.has(f))
}

/** describeFamilies names families for a message: "IPv4 and IPv6", "IPv6", "none". */
export function describeFamilies (fs: ReadonlySet<IpFamily>): string {
  const names = [...fs].sort().map(f => `IPv${f}`)
  return names.length === 0 ? 'none' : names.join(' and ')
}
