import { Type, type Static } from '@sinclair/typebox'

/**
 * CapMap is what a grant's `app` gives: application capabilities by name
 * (`example.com/cap/web`), each with a list of JSON values that the application reads
 * (`[{"role": "admin"}]`). Warren carries the values and never interprets them.
 */
export const CapMap = Type.Record(Type.String({ maxLength: 256 }), Type.Array(Type.Unknown(), { maxItems: 1000 }), { maxProperties: 256 })
export type CapMap = Static<typeof CapMap>
