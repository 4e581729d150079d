import type { Command } from 'commander'
import { adminCommand, addListCommand, withAdmin } from './admin.js'
import { printJson, printLine, relativeTime } from '../output.js'

/** register adds `warren admin users create|list|delete|recheck`. */
export function register (program: Command): void {
  const users = adminCommand(program).command('users').description('manage users')

  users.command('create <name>')
    .description('create a user')
    .option('--email <email>', 'the user\'s email, so that policies can name them by it')
    .action(async (name: string, opts: { email?: string }, cmd: Command) => {
      await withAdmin(cmd, async (admin, json) => {
        const user = await admin.users.create({ name, ...(opts.email !== undefined ? { email: opts.email } : {}) })
        if (json) printJson(user)
        else printLine(`created user ${user.name}${user.email !== undefined ? ` <${user.email}>` : ''} (id ${user.id})`)
      })
    })

  addListCommand(users, {
    description: 'list users',
    fetch: async admin => await admin.users.list(),
    columns: [
      { header: 'name', value: u => u.name },
      { header: 'email', value: u => u.email ?? '-' },
      { header: 'id', value: u => u.id },
      { header: 'created', value: u => relativeTime(u.created) }
    ],
    empty: 'no users yet; create one with \'warren admin users create NAME\''
  })

  users.command('delete <name>').alias('rm')
    .description('delete a user')
    .action(async (name: string, _opts: unknown, cmd: Command) => {
      await withAdmin(cmd, async (admin, json) => {
        await admin.users.delete(name)
        if (json) printJson({ deleted: name })
        else printLine(`deleted user ${name}`)
      })
    })

  users.command('recheck [user]')
    .description('ask the identity provider about a user (default: every user who logged in there) now, as the periodic check does')
    .action(async (user: string | undefined, _opts: unknown, cmd: Command) => {
      await withAdmin(cmd, async (admin, json) => {
        const results = await admin.users.recheck(user)
        if (json) { printJson(results); return }
        if (results.length === 0) printLine('no user has logged in at the identity provider yet')
        for (const r of results) {
          printLine(`${r.user}: ${r.outcome}${r.groups.length > 0 ? ` (groups ${r.groups.join(', ')})` : ''}${r.message !== undefined ? `: ${r.message}` : ''}`)
        }
      })
    })
}
