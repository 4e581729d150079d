import { Type, type Static } from '@sinclair/typebox'

/**
 * CapMap is what a grant's `app` gives: application capabilities by name
 * (`example.com/cap/web`), each with a list of JSON values that the application reads
 * (`[{"role": "admin"}]`). Warren carries the values and never interprets them.
 */
/** CapValues are one capability's JSON values, in grant order. */
export const CapValues = Type.Array(Type.Unknown(), { maxItems: 1000 })
export type CapValues = Static<typeof CapValues>

export const CapMap = Type.Record(Type.String({ maxLength: 256 }), CapValues, { maxProperties: 256 })
export type CapMap = Static<typeof CapMap>

/**
 * mergeCaps joins capability maps in order: two grants of one capability give one list
 * with the values of both, as in Tailscale. An empty list still names the capability.
 */
export function mergeCaps (maps: Iterable<CapMap>): CapMap {
  const out = new Map<string, unknown[]>()
  for (const m of maps) for (const [name, values] of Object.entries(m)) out.set(name, [...(out.get(name) ?? []), ...values])
  return Object.fromEntries(out)
}
