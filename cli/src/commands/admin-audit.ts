import { type Command, InvalidArgumentError } from 'commander'
import { adminCommand, withAdmin } from './admin.js'
import { printJson, printTable } from '../output.js'

function positiveInt (s: string): number {
  const n = Number(s)
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('use a whole number above 0')
  return n
}

/** register adds `warren admin audit`: who changed what, and when. */
export function register (program: Command): void {
  adminCommand(program).command('audit')
    .description('show the audit log of admin changes, newest last')
    .option('--limit <n>', 'show at most the last N entries', positiveInt)
    .action(async (opts: { limit?: number }, cmd: Command) => {
      await withAdmin(cmd, async (admin, json) => {
        const entries = await admin.audit.list(opts.limit !== undefined ? { limit: opts.limit } : {})
        if (json) { printJson(entries); return }
        printTable(entries, [
          { header: 'time', value: e => e.time },
          { header: 'actor', value: e => e.actor },
          { header: 'action', value: e => e.action },
          { header: 'target', value: e => e.target }
        ], 'the audit log is empty')
      })
    })
}
