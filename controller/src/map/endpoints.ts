import { isIPv4, isIPv6 } from 'node:net'
import { WarrenError } from '@warren/protocol'

/**
 * checkEndpoints validates the UDP endpoints a node reports (`192.0.2.1:41641` or
 * `[2001:db8::1]:41641`) and returns them without duplicates, in the order given. Peers
 * dial these addresses, so anything that is not an IP and a port is refused.
 */
export function checkEndpoints (endpoints: readonly string[], field = 'endpoints'): string[] {
  const seen = new Set<string>()
  endpoints.forEach((ep, i) => {
    const m = /^(?:\[([0-9a-fA-F:.]+)\]|(\d{1,3}(?:\.\d{1,3}){3})):(\d{1,5})$/.exec(ep)
    const port = m === null ? 0 : Number(m[3])
    const ipOk = m !== null && (m[1] !== undefined ? isIPv6(m[1]) : isIPv4(m[2]!))
    if (!ipOk || port < 1 || port > 65535) {
      throw new WarrenError('bad_endpoint',
        `${field}[${i}] '${ep.slice(0, 70)}' is not an IP address and UDP port: use 192.0.2.1:41641 or [2001:db8::1]:41641`,
        { field: `${field}/${i}` })
    }
    seen.add(ep)
  })
  return [...seen]
}
