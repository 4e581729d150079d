import type { Command } from 'commander'
import { WarrenError } from '@warren/protocol'
import { openLocal, localCommand, type LocalOptions } from './local-common.js'
import { printJson, printLine } from '../output.js'

interface IpOptions extends LocalOptions { 4?: boolean, 6?: boolean }

/** register adds `warren ip [-4|-6] [PEER]`: mesh addresses of this node or a peer. */
export function register (program: Command): void {
  localCommand(program, 'ip [peer]', 'print the mesh addresses of this node, or of a peer (by name or address)')
    .option('-4', 'only the IPv4 address')
    .option('-6', 'only the IPv6 address')
    .option('--json', 'print JSON for scripts')
    .action(async (peer: string | undefined, opts: IpOptions) => {
      if (opts[4] === true && opts[6] === true) throw new WarrenError('usage', 'give -4 or -6, not both')
      const family = opts[4] === true ? 4 : opts[6] === true ? 6 : undefined
      const r = await openLocal(opts).ip({ ...(peer !== undefined ? { peer } : {}), ...(family !== undefined ? { family } : {}) })
      if (opts.json === true) printJson(r)
      else for (const a of r.addresses) printLine(a)
    })
}
