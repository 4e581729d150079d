import { Type, type Static } from '@sinclair/typebox'

/**
 * NodeAttrs are a node's attributes from the policy's `nodeAttrs`: name -> values (empty
 * for a plain `attr`, the JSON values of an `app` capability). A node gets its own in its
 * map's `self` and never another node's.
 */
export const NodeAttrs = Type.Record(Type.String({ maxLength: 512 }), Type.Array(Type.Unknown(), { maxItems: 1000 }), { maxProperties: 1000 })
export type NodeAttrs = Static<typeof NodeAttrs>

/** RANDOMIZE_CLIENT_PORT makes a node's WireGuard listen on a random free UDP port instead of the default one. */
export const RANDOMIZE_CLIENT_PORT = 'randomize-client-port'

/** hasAttr says whether a node's attributes include `name`. */
export function hasAttr (attrs: NodeAttrs | undefined, name: string): boolean {
  return attrs !== undefined && Object.hasOwn(attrs, name)
}
