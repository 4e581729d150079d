import { lookup } from 'node:dns/promises'
import { isIP } from 'node:net'

/** HostResolver gives every address of a host name, of both families. */
export type HostResolver = (host: string) => Promise<string[]>

/** resolveAllFamilies is the system resolver's every address of a name, IPv4 and IPv6. */
export const resolveAllFamilies: HostResolver = async host => (await lookup(host, { all: true })).map(a => a.address)

/**
 * relayAddresses is where to send to a relay given by `host`: the address itself, or
 * every address of the name, IPv4 ones first (both nodes of a pair must reach the relay
 * over one family, and nearly every node has IPv4), then IPv6, each family in the
 * resolver's order without repeats. The caller moves on to the next when one goes
 * unanswered, so a relay reached over only one family still works.
 */
export async function relayAddresses (host: string, resolve: HostResolver = resolveAllFamilies): Promise<string[]> {
  if (isIP(host) !== 0) return [host]
  const all = [...new Set(await resolve(host))]
  const ordered = [...all.filter(a => isIP(a) === 4), ...all.filter(a => isIP(a) === 6)]
  if (ordered.length === 0) throw new Error(`relay host '${host}' has no IPv4 or IPv6 address`)
  return ordered
}
