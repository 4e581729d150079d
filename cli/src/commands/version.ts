import type { Command } from 'commander'
import { printLine } from '../output.js'
import { versionLine } from '../version.js'

/** register adds `warren version`: the CLI version and the protocol version it speaks. */
export function register (program: Command): void {
  program.command('version')
    .description('print the CLI and protocol versions')
    .action(() => { printLine(versionLine()) })
}
