import type { Command } from 'commander'
import type { LocalWhoisResponse } from '@warren/protocol'
import { openLocal, localCommand, type LocalOptions } from './local-common.js'
import { printJson, printLine } from '../output.js'

/** formatWhois writes a whois answer for people: the node, its owner and tags, then each capability with its values as JSON. */
export function formatWhois (r: LocalWhoisResponse): string {
  const caps = Object.entries(r.capabilities ?? {})
  return [
    `node: ${r.node.name}${r.self ? ' (this node)' : ''}`,
    `  name: ${r.node.fqdn}`,
    `  ips:  ${r.node.ipv4}, ${r.node.ipv6}`,
    `  id:   ${r.node.id}`,
    `user: ${r.user ?? '-'}`,
    `tags: ${r.tags.length > 0 ? r.tags.join(', ') : '-'}`,
    `capabilities: ${caps.length > 0 ? '' : '-'}`.trimEnd(),
    ...caps.map(([name, values]) => `  ${name}: ${JSON.stringify(values)}`)
  ].join('\n')
}

/** register adds `warren whois IP[:port]`: which node, user and tags a mesh address belongs to, and its capabilities here. */
export function register (program: Command): void {
  localCommand(program, 'whois <ip[:port]>', 'show the node, user and tags behind a mesh address, and the capabilities the policy gives it on this node')
    .option('--json', 'print JSON for scripts')
    .action(async (ip: string, opts: LocalOptions) => {
      const r = await openLocal(opts).whois(ip)
      if (opts.json === true) { printJson(r); return }
      printLine(formatWhois(r))
    })
}
