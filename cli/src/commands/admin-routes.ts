import type { Command } from 'commander'
import { checkRoutes, type NodeRoutes } from '@warren/protocol'
import { withAdmin } from './admin.js'
import { splitList } from './admin-keys.js'
import { printJson, printLine } from '../output.js'

/** describeRoutes is `warren admin nodes routes NODE` for a person: one line per route, marked. */
export function describeRoutes (r: NodeRoutes): string {
  const all = [...new Set([...r.advertised, ...r.approved])]
  if (all.length === 0) return `node ${r.node} advertises no routes (on it: warren up --advertise-routes CIDR,...)`
  const lines = all.map(route => {
    const advertised = r.advertised.includes(route)
    const approved = r.approved.includes(route)
    const role = r.primary?.includes(route) === true ? ', primary' : ', not primary (another router carries it, or this one is offline)'
    const state = advertised && approved ? `served${role}` : advertised ? `awaiting approval (warren admin nodes approve-routes ${r.node} ...)` : 'approved, not advertised'
    return `  ${route.padEnd(20)} ${state}`
  })
  return [`routes of ${r.node}:`, ...lines].join('\n')
}

/** registerRoutes adds `warren admin nodes routes NODE` and `warren admin nodes approve-routes NODE CIDR...`. */
export function registerRoutes (nodes: Command): void {
  nodes.command('routes <node>')
    .description('list the subnet routes a node advertises and which are approved')
    .action(async (ref: string, _opts: unknown, cmd: Command) => {
      await withAdmin(cmd, async (admin, json) => {
        const r = await admin.nodes.routes(ref)
        if (json) printJson(r)
        else printLine(describeRoutes(r))
      })
    })
  nodes.command('approve-routes <node> [cidrs...]')
    .description('set the routes approved for a node to exactly these CIDRs (space- or comma-separated; none approves none)')
    .action(async (ref: string, cidrs: string[], _opts: unknown, cmd: Command) => {
      // checked here too, so a typo is reported before anything is sent
      const routes = checkRoutes(cidrs.flatMap(splitList), 'approve-routes')
      await withAdmin(cmd, async (admin, json) => {
        const r = await admin.nodes.approveRoutes(ref, routes)
        if (json) printJson(r)
        else printLine(describeRoutes(r))
      })
    })
}
