import type { Command } from 'commander'
import { parseDuration, isKeyExpired, type AuthKeyInfo } from '@warren/protocol'
import { adminCommand, addListCommand, addExpireCommand, withAdmin, usageError } from './admin.js'
import { printJson, printLine, relativeTime } from '../output.js'

/** splitList reads `a,b, c` into ['a', 'b', 'c']; an empty string is an empty list. */
export function splitList (s: string | undefined): string[] {
  return (s ?? '').split(',').map(x => x.trim()).filter(x => x !== '')
}

/** authKeyState says in one word whether a key can still be used, and if not, why. */
export function authKeyState (k: AuthKeyInfo, now = Date.now()): string {
  if (k.revoked) return 'revoked'
  if (isKeyExpired(k.expires, now)) return 'expired'
  if (k.used && !k.reusable) return 'used'
  return 'valid'
}

function kind (k: AuthKeyInfo): string {
  return [k.reusable ? 'reusable' : 'single-use', ...(k.ephemeral ? ['ephemeral'] : []), ...(k.preapproved ? ['preapproved'] : [])].join(',')
}

interface CreateOpts { user?: string, reusable?: boolean, ephemeral?: boolean, expiry?: string, tags?: string, preapproved?: boolean }

/** register adds `warren admin keys create|list|expire` (auth keys that let nodes join). */
export function register (program: Command): void {
  const keys = adminCommand(program).command('keys').description('manage auth keys that let nodes join')

  keys.command('create')
    .description('create an auth key; it is shown once and embeds the controller\'s certificate pin')
    .option('--user <user>', 'the user that nodes joining with this key belong to')
    .option('--reusable', 'let many nodes join with this key (default: single use)')
    .option('--ephemeral', 'nodes joining with this key are removed after they go offline')
    .option('--expiry <duration>', 'how long the key can be used, for example 1h, 24h, 7d (default: the controller\'s, 90d)')
    .option('--tags <tags>', 'tags that nodes joining with this key carry, comma-separated (tag:a,tag:b)')
    .option('--preapproved', 'nodes joining with this key need no admin approval')
    .action(async (opts: CreateOpts, cmd: Command) => {
      const tags = splitList(opts.tags)
      if ((opts.user === undefined || opts.user === '') && tags.length === 0) {
        throw usageError('keys create needs --user USER (or --tags tag:x for a tagged key)')
      }
      if (opts.expiry !== undefined) parseDuration(opts.expiry, '--expiry')
      await withAdmin(cmd, async (admin, json) => {
        const res = await admin.authKeys.create({
          ...(opts.user !== undefined ? { user: opts.user } : {}),
          reusable: opts.reusable === true,
          ephemeral: opts.ephemeral === true,
          preapproved: opts.preapproved === true,
          ...(tags.length > 0 ? { tags } : {}),
          ...(opts.expiry !== undefined ? { expiry: opts.expiry } : {})
        })
        if (json) { printJson({ key: res.key, ...res.authKey }); return }
        const k = res.authKey
        printLine('auth key (shown only now; it also carries the controller\'s certificate pin):')
        printLine(res.key)
        printLine(`id ${k.id}, ${k.user !== undefined ? `user ${k.user}, ` : ''}${kind(k)}${k.tags.length > 0 ? `, tags ${k.tags.join(',')}` : ''}, expires ${relativeTime(k.expires)}`)
        printLine(`join a node with: warren up --controller ${admin.controllerUrl ?? 'URL'} --auth-key KEY`)
      })
    })

  addListCommand(keys, {
    description: 'list auth keys (their secrets are never shown again)',
    fetch: async admin => await admin.authKeys.list(),
    columns: [
      { header: 'id', value: k => k.id },
      { header: 'user', value: k => k.user ?? '-' },
      { header: 'kind', value: kind },
      { header: 'tags', value: k => k.tags.join(',') || '-' },
      { header: 'created', value: k => relativeTime(k.created) },
      { header: 'expires', value: k => relativeTime(k.expires) },
      { header: 'state', value: k => authKeyState(k) }
    ],
    empty: 'no auth keys; create one with \'warren admin keys create --user USER\''
  })

  addExpireCommand(keys, 'auth key', 'expire an auth key now, so no more nodes can join with it', async (admin, id) => await admin.authKeys.expire(id))
}
