import type { Policy, PolicyUser } from './types.js'
import { memberMatches } from './users.js'

/**
 * tagOwnersAllow says whether the policy's tagOwners let `user` put `tag` on its node:
 * listed by `name@` or email, through a group (its `idp:` members too), through autogroup:member or the user's role (autogroup:admin, ...).
 */
export function tagOwnersAllow (policy: Policy, user: PolicyUser | string, tag: string): boolean {
  const u = typeof user === 'string' ? { name: user } : user
  const isUser = (token: string): boolean => memberMatches(token, u)
  for (const owner of policy.tagOwners.get(tag)?.owners ?? []) {
    if (owner.startsWith('group:')) { if ((policy.groups.get(owner)?.members ?? []).some(isUser)) return true } else if (isUser(owner)) return true
  }
  return false
}
