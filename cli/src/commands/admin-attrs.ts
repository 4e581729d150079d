import type { Command } from 'commander'
import { WarrenError, type PostureValue } from '@warren/protocol'
import { withAdmin } from './admin.js'
import { printJson, printLine } from '../output.js'

/** describeAttrs is `warren admin nodes attrs NODE` for a person: one `key = value` line per attribute. */
export function describeAttrs (node: string, attrs: Record<string, PostureValue>): string {
  const keys = Object.keys(attrs).sort()
  if (keys.length === 0) return `node ${node} has no posture attributes yet (it reports node:os and others when it connects)`
  return [`posture attributes of ${node}:`, ...keys.map(k => `  ${k.padEnd(24)} ${JSON.stringify(attrs[k])}`)].join('\n')
}

/**
 * parseAttrAssignment reads `custom:key=value`: true/false become booleans and numbers
 * numbers (as in JSON) unless `asString`; anything else is a string.
 */
export function parseAttrAssignment (s: string, asString: boolean): [string, PostureValue] {
  const i = s.indexOf('=')
  if (i <= 0) throw new WarrenError('bad_attr', `'${s}' is not an assignment: write custom:key=value, for example custom:managed=true`, { field: 'attrs' })
  const key = s.slice(0, i)
  const text = s.slice(i + 1)
  if (asString || !/^(true|false|-?\d+(\.\d+)?)$/.test(text)) return [key, text]
  return [key, JSON.parse(text) as PostureValue]
}

/** registerAttrs adds `warren admin nodes attrs NODE`, `attrs set NODE custom:k=v...` and `attrs unset NODE custom:k...`. */
export function registerAttrs (nodes: Command): void {
  const attrs = nodes.command('attrs')
    .description('list a node\'s posture attributes, or set and unset its custom ones')
    .argument('<node>', 'node id or name')
    .action(async (ref: string, _opts: unknown, cmd: Command) => {
      await withAdmin(cmd, async (admin, json) => {
        const r = await admin.nodes.attrs(ref)
        if (json) printJson(r)
        else printLine(describeAttrs(r.node, r.attrs))
      })
    })
  attrs.command('set <node> <assignments...>')
    .description('set custom attributes: custom:key=value (true/false and numbers are typed; --string keeps text)')
    .option('--string', 'store every value as text (for versions such as 1.40)')
    .action(async (ref: string, assignments: string[], opts: { string?: boolean }, cmd: Command) => {
      const set = Object.fromEntries(assignments.map(a => parseAttrAssignment(a, opts.string === true)))
      await withAdmin(cmd, async (admin, json) => {
        const node = await admin.nodes.setAttrs(ref, { set })
        if (json) printJson(node)
        else printLine(describeAttrs(node.name, node.postureAttrs ?? {}))
      })
    })
  attrs.command('unset <node> <keys...>')
    .description('remove custom attributes (custom:key ...)')
    .action(async (ref: string, keys: string[], _opts: unknown, cmd: Command) => {
      await withAdmin(cmd, async (admin, json) => {
        const node = await admin.nodes.setAttrs(ref, { unset: keys })
        if (json) printJson(node)
        else printLine(describeAttrs(node.name, node.postureAttrs ?? {}))
      })
    })
}
