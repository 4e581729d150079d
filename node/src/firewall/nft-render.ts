/**
 * nft-render writes Warren's table as `nft -f` text: the whole table (sets, elements,
 * chains) for an atomic rebuild, an element diff for an update, or the table's removal.
 */
import { WarrenError } from '@warren/protocol'
import { flowChains, flowSets, refuseChain } from './flow-chains.js'
import { checkSharedPortRules, renderSharedPort } from './shared-port-rules.js'
import { renderRouteChains, renderRouteSets, routeForwardRules, type CompiledRoutes } from './route-rules.js'
import type { SharedPortRules } from './types.js'
import { SET_NAMES, setHasPorts, setIsInterval, setIsV6, type SetDiff, type SetElements, type SetName } from './set-elements.js'

/** RULESET_MARKER tags the rule that hooks the mesh interface, so a read-back can recognise our layout. */
export const RULESET_MARKER = 'warren ruleset v4'

/** RulesetOptions says where the ruleset lives and which interface it judges. */
export interface RulesetOptions {
  /** nftables table name; Warren owns this table and touches nothing else */
  table: string
  /** the mesh (WireGuard) interface whose inbound traffic is judged */
  interfaceName: string
  /** the rules that let the daemon's control socket share the WireGuard port, when it is open */
  sharedPort?: SharedPortRules
  /** what this node enforces as a subnet router, when it serves routes */
  routes?: CompiledRoutes
}

function setType (set: SetName): string {
  return `${setIsV6(set) ? 'ipv6_addr' : 'ipv4_addr'} . inet_proto${setHasPorts(set) ? ' . inet_service' : ''}`
}

/** checkRulesetOptions refuses names nft would misread, before anything reaches nft. */
export function checkRulesetOptions (o: RulesetOptions): void {
  if (!/^[A-Za-z][A-Za-z0-9_]{0,63}$/.test(o.table)) {
    throw new WarrenError('bad_firewall_config', `nftables table name "${o.table}" is not valid; use letters, digits and _ (for example warren)`, { field: 'table' })
  }
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(o.interfaceName)) {
    throw new WarrenError('bad_firewall_config', `interface name "${o.interfaceName}" is not valid; use 1-15 letters, digits, '_', '.' or '-' (for example warren0)`, { field: 'interfaceName' })
  }
  if (o.sharedPort !== undefined) checkSharedPortRules(o.sharedPort)
}

/**
 * renderTableBody renders `table inet <name> { ... }` with its sets, elements and chains.
 * Only packets that arrive on, or leave by, the mesh interface enter Warren's chains; those
 * that arrive are judged (default drop; a forbidden new flow is rejected, rate-limited:
 * refuseChain), those that leave only record flow state. The base
 * chains run at priority filter - 10, before the host's usual filter rules; their `accept`
 * only ends Warren's verdict, so the host's own rules still judge the packet after.
 */
export function renderTableBody (sets: SetElements, o: RulesetOptions): string {
  const lines = [`table inet ${o.table} {`]
  for (const name of SET_NAMES) {
    lines.push(`  set ${name} {`, `    type ${setType(name)}`)
    if (setIsInterval(name)) lines.push('    flags interval')
    if (sets[name].length > 0) lines.push(`    elements = {\n      ${sets[name].join(',\n      ')}\n    }`)
    lines.push('  }')
  }
  lines.push(...flowSets('4'), ...flowSets('6'), ...(o.routes !== undefined ? renderRouteSets(o.routes) : []))
  lines.push(
    '  chain mesh {',
    '    meta nfproto vmap { ipv4 : goto in4, ipv6 : goto in6 }',
    '    drop',
    '  }',
    '  chain meshout {',
    '    meta nfproto vmap { ipv4 : goto out4, ipv6 : goto out6 }',
    '  }',
    ...flowChains('4'), ...flowChains('6'), ...refuseChain(),
    ...(o.sharedPort !== undefined ? renderSharedPort(o.sharedPort) : []),
    ...(o.routes !== undefined ? renderRouteChains(o.routes, o.interfaceName) : []))
  const routed = o.routes !== undefined ? routeForwardRules(o.routes, o.interfaceName) : []
  const judge = `    iifname "${o.interfaceName}" jump mesh comment "${RULESET_MARKER}"`
  const record = `    oifname "${o.interfaceName}" jump meshout`
  for (const [hook, rules] of [['input', [judge]], ['forward', [...routed, judge, record]], ['output', [record]]] as const) {
    lines.push(
      `  chain ${hook} {`,
      `    type filter hook ${hook} priority filter - 10; policy accept;`,
      ...rules,
      '  }')
  }
  lines.push('}')
  return lines.join('\n') + '\n'
}

/** renderTableScript replaces the table atomically: create if missing, delete, define anew. */
export function renderTableScript (sets: SetElements, o: RulesetOptions): string {
  return `add table inet ${o.table}\ndelete table inet ${o.table}\n${renderTableBody(sets, o)}`
}

/** renderDeleteScript removes the table if it exists (and nothing else) in one transaction. */
export function renderDeleteScript (table: string): string {
  return `add table inet ${table}\ndelete table inet ${table}\n`
}

/**
 * renderElementScript renders a diff as element commands only, deletions first so that a
 * merged element can replace the ones it covers in the same transaction; '' when empty.
 */
export function renderElementScript (diff: SetDiff, table: string): string {
  const lines: string[] = []
  for (const [verb, part] of [['delete', diff.del], ['add', diff.add]] as const) {
    for (const name of SET_NAMES) {
      if (part[name].length > 0) lines.push(`${verb} element inet ${table} ${name} { ${part[name].join(', ')} }`)
    }
  }
  return lines.length === 0 ? '' : lines.join('\n') + '\n'
}
