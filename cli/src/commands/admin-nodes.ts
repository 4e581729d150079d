import type { Command } from 'commander'
import type { Node } from '@warren/protocol'
import type { AdminClient } from '@warren/sdk'
import { adminCommand, addListCommand, withAdmin } from './admin.js'
import { splitList } from './admin-keys.js'
import { printJson, printLine, relativeTime } from '../output.js'
import { registerRoutes } from './admin-routes.js'
import { registerAttrs } from './admin-attrs.js'

function owner (n: Node): string {
  return n.tags.length > 0 ? n.tags.join(',') : n.user ?? '-'
}

/** register adds `warren admin nodes list|approve|rename|expire|delete|tag|routes|approve-routes`. */
export function register (program: Command): void {
  const nodes = adminCommand(program).command('nodes').description('manage nodes (devices); NODE is a node name or id')

  addListCommand(nodes, {
    description: 'list nodes',
    fetch: async admin => await admin.nodes.list(),
    columns: [
      { header: 'id', value: n => n.id },
      { header: 'name', value: n => n.name },
      { header: 'owner', value: owner },
      { header: 'ipv4', value: n => n.ipv4 },
      { header: 'ipv6', value: n => n.ipv6 },
      { header: 'status', value: n => n.status },
      { header: 'online', value: n => n.online ? 'online' : 'offline' },
      { header: 'last seen', value: n => n.online ? 'now' : relativeTime(n.lastSeen) }
    ],
    empty: 'no nodes yet; make an auth key with \'warren admin keys create\' and run \'warren up\' on a device'
  })

  /** change adds one verb that changes a node and reports the result in a line or as JSON. */
  const change = (
    verb: string,
    describe: string,
    run: (admin: AdminClient, node: string, arg: string) => Promise<Node | undefined>,
    say: (n: Node | undefined, ref: string) => string,
    arg?: string
  ): void => {
    nodes.command(`${verb} <node>${arg !== undefined ? ` <${arg}>` : ''}`)
      .description(describe)
      .action(async (ref: string, ...rest: unknown[]) => {
        // commander passes the arguments, then the options, then the command itself
        const cmd = rest[rest.length - 1] as Command
        const value = arg !== undefined ? String(rest[0]) : ''
        await withAdmin(cmd, async (admin, json) => {
          const n = await run(admin, ref, value)
          if (json) printJson(n ?? { deleted: ref })
          else printLine(say(n, ref))
        })
      })
  }

  change('approve', 'approve a node that waits for approval', async (a, ref) => await a.nodes.approve(ref),
    n => `approved node ${n!.name} (${n!.ipv4}, ${n!.ipv6})`)
  change('rename', 'rename a node (its MagicDNS name follows)', async (a, ref, name) => await a.nodes.rename(ref, name),
    (n, ref) => `renamed node ${ref} to ${n!.name} (${n!.fqdn})`, 'new-name')
  change('expire', 'expire a node\'s key now: it drops off the mesh until it logs in again', async (a, ref) => await a.nodes.expire(ref),
    n => `expired node ${n!.name}`)
  change('delete', 'delete a node: it leaves every peer\'s map', async (a, ref) => { await a.nodes.delete(ref); return undefined },
    (_n, ref) => `deleted node ${ref}`)
  registerRoutes(nodes)
  registerAttrs(nodes)
  change('tag', 'set a node\'s tags (comma-separated, tag:a,tag:b; an empty string clears them)', async (a, ref, tags) => await a.nodes.setTags(ref, splitList(tags)),
    n => `node ${n!.name} now has tags ${n!.tags.join(',') || '(none)'}`, 'tags')
}
