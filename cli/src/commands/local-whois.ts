import type { Command } from 'commander'
import { openLocal, localCommand, type LocalOptions } from './local-common.js'
import { printJson, printLine } from '../output.js'

/** register adds `warren whois IP`: which node, user and tags a mesh address belongs to. */
export function register (program: Command): void {
  localCommand(program, 'whois <ip>', 'show the node, user and tags behind a mesh address')
    .option('--json', 'print JSON for scripts')
    .action(async (ip: string, opts: LocalOptions) => {
      const r = await openLocal(opts).whois(ip)
      if (opts.json === true) { printJson(r); return }
      printLine(`node: ${r.node.name}${r.self ? ' (this node)' : ''}`)
      printLine(`  name: ${r.node.fqdn}`)
      printLine(`  ips:  ${r.node.ipv4}, ${r.node.ipv6}`)
      printLine(`  id:   ${r.node.id}`)
      printLine(`user: ${r.user ?? '-'}`)
      printLine(`tags: ${r.tags.length > 0 ? r.tags.join(', ') : '-'}`)
    })
}
