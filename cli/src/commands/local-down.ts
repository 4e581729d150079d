import type { Command } from 'commander'
import { openLocal, checkVersion, localCommand, type LocalOptions } from './local-common.js'
import { printJson, printLine } from '../output.js'

/** register adds `warren down`: disconnect and remove the interface, routes, firewall and DNS settings. */
export function register (program: Command): void {
  localCommand(program, 'down', 'disconnect from the mesh and remove the interface, its routes, the firewall table and DNS settings')
    .option('--json', 'print the resulting status as JSON')
    .action(async (opts: LocalOptions) => {
      const st = checkVersion(await openLocal(opts).down())
      if (opts.json === true) printJson(st)
      else printLine(`down (${st.interfaceName} removed; 'warren up' connects again)`)
    })
}
