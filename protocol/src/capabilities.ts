import { Type, type Static } from '@sinclair/typebox'
import type { FilterRule } from './messages.js'
import { parseIpAddress } from './ip.js'
import { srcsContain } from './filter.js'

/**
 * CapMap is what a grant's `app` gives: application capabilities by name
 * (`example.com/cap/web`), each with a list of JSON values that the application reads
 * (`[{"role": "admin"}]`). Warren carries the values and never interprets them.
 */
export const CapMap = Type.Record(Type.String({ maxLength: 256 }), Type.Array(Type.Unknown(), { maxItems: 1000 }), { maxProperties: 256 })
export type CapMap = Static<typeof CapMap>

/**
 * capabilitiesOf is the one meaning of the capability rules of a node's filter (rules with
 * `caps`): what a caller at `ip` holds on this node. Every rule whose sources contain the
 * address adds its values, in filter order (the policy's grant order), so two grants of the
 * same capability give one list with the values of both, as in Tailscale. An empty list
 * still names the capability. An address no rule names holds nothing.
 */
export function capabilitiesOf (filter: readonly FilterRule[], ip: string): CapMap {
  const out = new Map<string, unknown[]>()
  const addr = parseIpAddress(ip)
  if (addr === undefined) return {}
  for (const rule of filter) {
    if (rule.caps === undefined || !srcsContain(rule.srcs, addr)) continue
    for (const [name, values] of Object.entries(rule.caps)) out.set(name, [...(out.get(name) ?? []), ...values])
  }
  return Object.fromEntries(out)
}
