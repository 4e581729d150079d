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

/** isUniqueLocal says an IPv6 address is unique local (fc00::/7): reachable only inside its site. */
function isUniqueLocal (address: string): boolean {
  return /^f[cd]/i.test(address)
}

/** hostsOf are the hosts of endpoints, skipping any that do not parse. */
function hostsOf (endpoints: ReadonlyArray<string | undefined>): string[] {
  return endpoints.flatMap(e => {
    if (e === undefined) return []
    try { return [parseHostPort(e, 'endpoint').host] } catch { return [] }
  })
}

/** relayFamilies are the families nodes can reach a relay's UDP side over (none without one). */
export function relayFamilies (info: RelayInfo): Set<IpFamily> {
  return new Set(hostsOf([info.udp, info.udp6]).flatMap(familiesOfHost))
}

/** relayIsSiteLocal says a relay's only IPv6 addresses are unique local (then so may a node's be). */
function relayIsSiteLocal (info: RelayInfo): boolean {
  const v6 = hostsOf([info.udp, info.udp6]).filter(h => isIP(h) === 6)
  return v6.length > 0 && v6.every(isUniqueLocal)
}

/**
 * nodeFamilies are the families of a node's reported endpoints that can reach a relay:
 * a unique-local IPv6 address (fc00::/7) counts only toward a relay whose IPv6 address is
 * one too (`siteLocal`). A node that reported none yet might use either.
 */
export function nodeFamilies (n: Node, siteLocal = false): ReadonlySet<IpFamily> {
  const out = new Set<IpFamily>()
  for (const host of hostsOf(n.endpoints)) {
    const f = isIP(host)
    if (f === 4) out.add(4)
    if (f === 6 && (siteLocal || !isUniqueLocal(host))) out.add(6)
  }
  return out.size === 0 ? BOTH : out
}

/**
 * pairFamily is the family a pair binds to `relay` over: IPv4 when the relay and both
 * nodes have it (nodes try IPv4 first), else IPv6, else undefined (no common family).
 */
export function pairFamily (relay: RelayInfo, a: Node, b: Node): IpFamily | undefined {
  const r = relayFamilies(relay)
  const siteLocal = relayIsSiteLocal(relay)
  const x = nodeFamilies(a, siteLocal)
  const y = nodeFamilies(b, siteLocal)
  return ([4, 6] as const).find(f => r.has(f) && x.has(f) && y.has(f))
}

/** describeFamilies names families for a message: "IPv4 and IPv6", "IPv6", "none". */
export function describeFamilies (fs: ReadonlySet<IpFamily>): string {
  const names = [...fs].sort().map(f => `IPv${f}`)
  return names.length === 0 ? 'none' : names.join(' and ')
}
