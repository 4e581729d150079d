import type { Command } from 'commander'
import { USER_ROLES, type UserRole } from '@warren/protocol'
import { adminCommand, addListCommand, withAdmin } from './admin.js'
import { printJson, printLine, relativeTime } from '../output.js'

/** register adds `warren admin users create|list|role|delete|recheck`. */
export function register (program: Command): void {
  const users = adminCommand(program).command('users').description('manage users')

  users.command('create <name>')
    .description('create a user')
    .option('--email <email>', 'the user\'s email, so that policies can name them by it')
    .option('--role <role>', `the user's role: ${USER_ROLES.join(', ')} (default: owner for the first user, else member)`)
    .action(async (name: string, opts: { email?: string, role?: string }, cmd: Command) => {
      await withAdmin(cmd, async (admin, json) => {
        const user = await admin.users.create({ name, ...(opts.email !== undefined ? { email: opts.email } : {}), ...(opts.role !== undefined ? { role: opts.role as UserRole } : {}) })
        if (json) printJson(user)
        else printLine(`created user ${user.name}${user.email !== undefined ? ` <${user.email}>` : ''} (id ${user.id}, role ${user.role ?? 'member'})`)
      })
    })

  addListCommand(users, {
    description: 'list users',
    fetch: async admin => await admin.users.list(),
    columns: [
      { header: 'name', value: u => u.name },
      { header: 'email', value: u => u.email ?? '-' },
      { header: 'role', value: u => u.role ?? 'member' },
      { header: 'id', value: u => u.id },
      { header: 'created', value: u => relativeTime(u.created) }
    ],
    empty: 'no users yet; create one with \'warren admin users create NAME\''
  })

  users.command('role <name> <role>')
    .description(`give a user a role (${USER_ROLES.join(', ')}); autogroup:<role> in the policy follows it`)
    .action(async (name: string, role: string, _opts: unknown, cmd: Command) => {
      await withAdmin(cmd, async (admin, json) => {
        const user = await admin.users.setRole(name, role as UserRole)
        if (json) printJson(user)
        else printLine(`user ${user.name} is now ${user.role ?? 'member'}`)
      })
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
