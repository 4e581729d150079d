import type { Command } from 'commander'
import { Option } from 'commander'
import { parseDuration, isKeyExpired, type ApiKeyInfo, type ApiKeyScope } from '@warren/protocol'
import { adminCommand, addListCommand, addExpireCommand, withAdmin } from './admin.js'
import { printJson, printLine, relativeTime } from '../output.js'

function apiKeyState (k: ApiKeyInfo, now = Date.now()): string {
  if (k.revoked) return 'revoked'
  return isKeyExpired(k.expires, now) ? 'expired' : 'valid'
}

/** register adds `warren admin apikeys create|list|expire` (keys for remote admin, and relay keys). */
export function register (program: Command): void {
  const apikeys = adminCommand(program).command('apikeys').description('manage API keys for remote admin and for standalone relays')

  apikeys.command('create')
    .description('create an API key; it is shown once and embeds the controller\'s certificate pin')
    .option('--expiry <duration>', 'how long the key is valid, for example 30d (default: the controller\'s, 90d)')
    .option('--description <text>', 'what the key is for, shown in lists and the audit log')
    .addOption(new Option('--scope <scope>', 'admin: the admin API; relay: only links a standalone relay (\'warren relay serve --key-file\')').choices(['admin', 'relay']).default('admin'))
    .action(async (opts: { expiry?: string, description?: string, scope: ApiKeyScope }, cmd: Command) => {
      if (opts.expiry !== undefined) parseDuration(opts.expiry, '--expiry')
      await withAdmin(cmd, async (admin, json) => {
        const res = await admin.apiKeys.create({
          ...(opts.expiry !== undefined ? { expiry: opts.expiry } : {}),
          ...(opts.description !== undefined ? { description: opts.description } : {}),
          scope: opts.scope
        })
        if (json) { printJson({ key: res.key, ...res.apiKey }); return }
        printLine('API key (shown only now; it also carries the controller\'s certificate pin):')
        printLine(res.key)
        printLine(`id ${res.apiKey.id}, scope ${res.apiKey.scope}, expires ${relativeTime(res.apiKey.expires)}`)
        if (res.apiKey.scope === 'relay') {
          printLine(`use it on the relay host: put it in a file, 'chmod 600 FILE', then warren relay serve --controller ${admin.controllerUrl ?? 'URL'} --key-file FILE ... (or WARREN_RELAY_KEY)`)
        } else {
          printLine(`use it with: warren admin --controller ${admin.controllerUrl ?? 'URL'} --api-key KEY ... (or WARREN_CONTROLLER and WARREN_API_KEY)`)
        }
      })
    })

  addListCommand(apikeys, {
    description: 'list API keys (their secrets are never shown again)',
    fetch: async admin => await admin.apiKeys.list(),
    columns: [
      { header: 'id', value: k => k.id },
      { header: 'scope', value: k => k.scope },
      { header: 'description', value: k => k.description ?? '-' },
      { header: 'created', value: k => relativeTime(k.created) },
      { header: 'expires', value: k => relativeTime(k.expires) },
      { header: 'last used', value: k => relativeTime(k.lastUsed) },
      { header: 'state', value: k => apiKeyState(k) }
    ],
    empty: 'no API keys; create one with \'warren admin apikeys create\''
  })

  addExpireCommand(apikeys, 'API key', 'expire an API key now', async (admin, id) => await admin.apiKeys.expire(id))
}
