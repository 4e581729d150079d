import type { Command } from 'commander'
import { adminCommand, addListCommand, withAdmin } from './admin.js'
import { printJson, printLine, relativeTime } from '../output.js'

/** register adds `warren admin users create|list|delete`. */
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
}
