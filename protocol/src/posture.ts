import { Type, type Static } from '@sinclair/typebox'

/**
 * Device posture attributes and user roles: what the controller, the daemon, the SDK and
 * the CLI all need to agree on. A node reports its `node:` attributes itself (in its map
 * hello); admins set `custom:` ones. The policy's postures are conditions on them.
 */

/** USER_ROLES are the roles a user may have, as in Tailscale; `autogroup:<role>` names each in a policy. */
export const USER_ROLES = ['owner', 'admin', 'it-admin', 'network-admin', 'billing-admin', 'auditor', 'member'] as const
export type UserRole = typeof USER_ROLES[number]
export const UserRoleSchema = Type.Union(USER_ROLES.map(r => Type.Literal(r)))

/** DEFAULT_ROLE is the role of a user created without one (and of users stored before roles existed). */
export const DEFAULT_ROLE: UserRole = 'member'

/** isUserRole says whether s names a role. */
export function isUserRole (s: string): s is UserRole {
  return (USER_ROLES as readonly string[]).includes(s)
}

/**
 * HOST_ATTR_KEYS are the attributes a node reports about itself (node:tsVersion is Warren's
 * version, node:tsReleaseTrack `stable` for a release and `unstable` for a pre-release build).
 */
export const HOST_ATTR_KEYS = ['node:os', 'node:osVersion', 'node:tsVersion', 'node:tsReleaseTrack'] as const

/** CUSTOM_ATTR_PATTERN is what an admin-set attribute key looks like: `custom:` and a name. */
export const CUSTOM_ATTR_PATTERN = '^custom:[A-Za-z0-9_]{1,50}$'

/** isCustomAttr says whether key names an attribute admins may set. */
export function isCustomAttr (key: string): boolean {
  return new RegExp(CUSTOM_ATTR_PATTERN).test(key)
}

/** PostureValue is one attribute's value: a string, a number or a boolean. */
export const PostureValue = Type.Union([Type.String({ maxLength: 200 }), Type.Number(), Type.Boolean()])
export type PostureValue = Static<typeof PostureValue>

/** PostureAttrs are a node's posture attributes by key (`node:os`, `custom:managed`). */
export const PostureAttrs = Type.Record(Type.String({ maxLength: 60, pattern: '^(node|custom):[A-Za-z0-9_]{1,50}$' }), PostureValue, { maxProperties: 64 })
export type PostureAttrs = Static<typeof PostureAttrs>

/** HostAttrs are the `node:` attributes a daemon reports in its map hello. */
export const HostAttrs = Type.Object({
  'node:os': Type.Optional(Type.String({ maxLength: 50 })),
  'node:osVersion': Type.Optional(Type.String({ maxLength: 100 })),
  'node:tsVersion': Type.Optional(Type.String({ maxLength: 50 })),
  'node:tsReleaseTrack': Type.Optional(Type.Union([Type.Literal('stable'), Type.Literal('unstable')]))
}, { additionalProperties: false })
export type HostAttrs = Static<typeof HostAttrs>

/** SetNodeAttrsRequest sets and removes a node's custom attributes in one change. */
export const SetNodeAttrsRequest = Type.Object({
  set: Type.Optional(Type.Record(Type.String({ maxLength: 60, pattern: CUSTOM_ATTR_PATTERN }), PostureValue, { maxProperties: 64 })),
  unset: Type.Optional(Type.Array(Type.String({ maxLength: 60, pattern: CUSTOM_ATTR_PATTERN }), { maxItems: 64 }))
}, { additionalProperties: false })
export type SetNodeAttrsRequest = Static<typeof SetNodeAttrsRequest>

/** PostureAttrsResponse answers `warren admin nodes attrs NODE`: every attribute, reported and custom. */
export const PostureAttrsResponse = Type.Object({ node: Type.String({ maxLength: 63 }), attrs: PostureAttrs }, { additionalProperties: false })
export type PostureAttrsResponse = Static<typeof PostureAttrsResponse>

/** SetUserRoleRequest is `warren admin users role NAME ROLE`. */
export const SetUserRoleRequest = Type.Object({ role: UserRoleSchema }, { additionalProperties: false })
export type SetUserRoleRequest = Static<typeof SetUserRoleRequest>
