import type { Command } from 'commander'
import type { LocalNetcheck } from '@warren/protocol'
import { openLocal, localCommand, type LocalOptions } from './local-common.js'
import { printJson, printLine } from '../output.js'

/** natKind says in words what the report means for reaching this node directly over IPv4. */
function natKind (r: LocalNetcheck): string {
  if (!r.udp) return r.ipv6?.udp === true ? 'no UDP over IPv4: peers with IPv6 are reached over IPv6, others over the TLS relay' : 'no UDP: peers are reached over the TLS relay'
  if (r.endpointIndependent === true) return 'endpoint-independent mapping: peers can reach this node directly'
  if (r.endpointIndependent === false) return 'endpoint-dependent (symmetric) mapping: peers need a relay unless the other side is reachable'
  return 'unknown (fewer than two STUN servers answered)'
}

/** ipv6Line says what the IPv6 STUN servers saw, or that none was asked. */
function ipv6Line (r: LocalNetcheck): string {
  const v6 = r.ipv6
  if (v6 === undefined) return 'not checked (the map lists no IPv6 STUN server)'
  if (!v6.udp) return 'no answer over IPv6'
  const kind = v6.endpointIndependent === false ? ', endpoint-dependent mapping' : ''
  return `yes, mapping ${v6.mappings.join(', ')}${kind}`
}

/** register adds `warren netcheck`: the WireGuard port's public mapping, NAT kind, UDP and latency per STUN server. */
export function register (program: Command): void {
  localCommand(program, 'netcheck', 'show how this node is seen from outside: public mapping, NAT kind, UDP, latency')
    .option('--json', 'print JSON for scripts')
    .action(async (opts: LocalOptions) => {
      const r = await openLocal(opts).netcheck()
      if (opts.json === true) { printJson(r); return }
      printLine(`UDP:      ${r.udp ? 'yes' : 'no'}`)
      printLine(`mapping:  ${r.mappings.length === 0 ? '-' : r.mappings.join(', ')} (WireGuard port ${r.wgPort})`)
      printLine(`NAT:      ${natKind(r)}`)
      printLine(`IPv6:     ${ipv6Line(r)}`)
      for (const s of r.servers) {
        const what = s.mapped !== undefined ? `${s.mapped} in ${s.latencyMs?.toFixed(2) ?? '?'} ms` : s.error ?? 'no answer'
        printLine(`  ${s.server}${s.address !== undefined && s.address !== s.server ? ` (${s.address})` : ''}: ${what}`)
      }
    })
}
