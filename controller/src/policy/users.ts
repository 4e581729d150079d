import { DEFAULT_ROLE, USER_ROLES, isUserRole } from '@warren/protocol'
import { policyRules, type Policy, type PolicyUser } from './types.js'

/**
 * UserDirectory turns the ways a policy names a user (`alice@`, `alice@example.com`, or a
 * stored user name) into one user name. A user that does not exist yet resolves to a
 * stable name of its own (the token as written), so policies and tests work before
 * everyone has joined and start matching once the user is created.
 */
export interface UserDirectory {
  resolve: (token: string) => { name: string, known: boolean }
  names: () => string[]
}

export function createUserDirectory (users: readonly PolicyUser[]): UserDirectory {
  const byName = new Map<string, PolicyUser>()
  const byEmail = new Map<string, PolicyUser>()
  for (const u of users) {
    byName.set(u.name.toLowerCase(), u)
    if (u.email !== undefined) byEmail.set(u.email.toLowerCase(), u)
  }
  return {
    resolve (token) {
      const t = token.toLowerCase()
      if (t.endsWith('@')) {
        const name = t.slice(0, -1)
        return { name, known: byName.has(name) }
      }
      if (t.includes('@')) {
        const u = byEmail.get(t)
        return u === undefined ? { name: t, known: false } : { name: u.name, known: true }
      }
      return { name: t, known: byName.has(t) }
    },
    names: () => [...byName.keys()]
  }
}

/** isUserToken says whether s names a user the way a policy does (`alice@`, `alice@example.com`). */
export function isUserToken (s: string): boolean {
  return /^[^@\s:]+@[^@\s:]*$/.test(s)
}

/** IDP_GROUP_PREFIX starts a policy group member that stands for an identity-provider group (`idp:engineering`). */
export const IDP_GROUP_PREFIX = 'idp:'

/** isIdpGroupToken says whether a group member names an identity-provider group. */
export function isIdpGroupToken (s: string): boolean {
  return s.startsWith(IDP_GROUP_PREFIX) && s.length > IDP_GROUP_PREFIX.length
}

/**
 * expandIdpGroups replaces each `idp:NAME` member with `user@` for every user the identity
 * provider put in group NAME (group names compare exactly, as the provider writes them);
 * other members are kept as written.
 */
export function expandIdpGroups (members: readonly string[], users: readonly PolicyUser[]): string[] {
  return members.flatMap(m => isIdpGroupToken(m)
    ? users.filter(u => u.idpGroups?.includes(m.slice(IDP_GROUP_PREFIX.length)) === true).map(u => `${u.name.toLowerCase()}@`)
    : [m])
}

/** ROLE_AUTOGROUPS name the users of each role other than member: autogroup:owner, autogroup:admin, ... */
export const ROLE_AUTOGROUPS: readonly string[] = USER_ROLES.filter(r => r !== 'member').map(r => `autogroup:${r}`)

/** isUserAutogroup says whether an autogroup names users: autogroup:member or a role's. */
export function isUserAutogroup (s: string): boolean {
  return s === 'autogroup:member' || ROLE_AUTOGROUPS.includes(s)
}

/** roleOf is a user's role; users stored before roles existed are members. */
export function roleOf (user: PolicyUser): string {
  return user.role ?? DEFAULT_ROLE
}

/**
 * hasRole says whether a user is in a role's autogroup: their own role, and for the owner
 * autogroup:admin too (the owner holds every admin right; Tailscale's answers give the
 * owner's devices what autogroup:admin gets).
 */
export function hasRole (user: PolicyUser, role: string): boolean {
  const own = roleOf(user)
  return own === role || (role === 'admin' && own === 'owner')
}

/** rolesOf are the role autogroups a user is in (none for a member). */
export function rolesOf (user: PolicyUser): string[] {
  return USER_ROLES.filter(r => r !== 'member' && hasRole(user, r))
}

/**
 * memberMatches says whether a policy token (`name@`, an email, `idp:NAME`,
 * autogroup:member or a role's autogroup) names `user`.
 */
export function memberMatches (token: string, user: PolicyUser): boolean {
  if (token === 'autogroup:member') return true
  if (token.startsWith('autogroup:')) { const role = token.slice('autogroup:'.length); return isUserRole(role) && hasRole(user, role) }
  if (isIdpGroupToken(token)) return user.idpGroups?.includes(token.slice(IDP_GROUP_PREFIX.length)) === true
  return token === `${user.name.toLowerCase()}@` || (user.email !== undefined && token === user.email.toLowerCase())
}

/**
 * emailResolution lists which user each email in the policy's groups, rules and nodeAttrs names,
 * which users each `idp:` group member stands for, and (when the policy names roles) each
 * user's role. A user change matters to a
 * compiled policy only when it changes this (`name@` never depends on which users
 * exist), so most user changes cost nothing.
 */
export function emailResolution (policy: Policy, users: readonly PolicyUser[]): string {
  const dir = createUserDirectory(users)
  const emails = new Set<string>()
  const idpGroups = new Set<string>()
  for (const g of policy.groups.values()) for (const m of g.members) if (isIdpGroupToken(m)) idpGroups.add(m); else if (!m.endsWith('@')) emails.add(m)
  const domains = new Set<string>()
  // the selectors of rules and of nodeAttrs targets: both name users
  const selectors = [...policyRules(policy).flatMap(r => [...r.src, ...r.dst].map(s => s.selector)), ...policy.nodeAttrs.flatMap(e => e.targets)]
  for (const sel of selectors) {
    if (sel.kind === 'user' && !sel.token.endsWith('@')) emails.add(sel.token)
    if (sel.kind === 'domain') domains.add(sel.domain)
  }
  // a domain's members are every user with such an email
  for (const u of users) if (u.email !== undefined && domains.has(u.email.toLowerCase().split('@')[1]!)) emails.add(u.email.toLowerCase())
  const byEmail = [...emails].sort().map(e => `${e}=${dir.resolve(e).name}`)
  const byIdpGroup = [...idpGroups].sort().map(g => `${g}=${expandIdpGroups([g], users).sort().join(',')}`)
  // a role's autogroup names whoever has the role now, so role changes matter too
  const byRole = usesRoles(policy) ? users.map(u => `${u.name.toLowerCase()}:${roleOf(u)}`).sort() : []
  return [...byEmail, ...byIdpGroup, ...byRole].join(' ')
}

/** usesRoles says whether the policy names a role's autogroup anywhere (sources, tagOwners, autoApprovers). */
function usesRoles (policy: Policy): boolean {
  const isRole = (s: string): boolean => ROLE_AUTOGROUPS.includes(s)
  return policyRules(policy).some(r => r.src.some(s => s.selector.kind === 'role')) ||
    [...policy.tagOwners.values()].some(t => t.owners.some(isRole)) ||
    [...(policy.autoApprovers?.routes ?? []).flatMap(r => r.approvers), ...(policy.autoApprovers?.exitNode ?? [])].some(isRole)
}
