import { WarrenError } from '@warren/protocol'
import type { IdpIdentity } from '../state.js'
import type { OidcSettings } from './oidc-options.js'

/** loginRefused is the error of a refused login: status 403, and `code` names the reason. */
export function loginRefused (code: string, message: string): WarrenError {
  return new WarrenError(code, message, { status: 403 })
}

/**
 * identityFromClaims reads a person from the ID token's claims, completed by the
 * userinfo answer where the token lacks email, name or groups (Authelia and others put
 * them only there). An email the provider marks unverified is not taken, since policies
 * and account linking trust it.
 */
export function identityFromClaims (claims: Record<string, unknown>, userinfo: Record<string, unknown> | undefined, groupsClaim: string): IdpIdentity {
  const pick = (name: string): unknown => claims[name] ?? userinfo?.[name]
  const text = (v: unknown): string | undefined => typeof v === 'string' && v !== '' ? v : undefined
  const email = text(pick('email'))
  const verified = pick('email_verified') !== false
  const rawGroups = pick(groupsClaim)
  const groups = Array.isArray(rawGroups) ? rawGroups.filter((g): g is string => typeof g === 'string') : typeof rawGroups === 'string' ? [rawGroups] : []
  const name = text(pick('name'))
  const username = text(pick('preferred_username'))
  return {
    issuer: String(claims.iss),
    subject: String(claims.sub),
    ...(email !== undefined && verified && /^[^@\s]+@[^@\s]+$/.test(email) ? { email } : {}),
    ...(name !== undefined ? { name } : {}),
    ...(username !== undefined ? { username } : {}),
    groups
  }
}

/**
 * checkAllowed refuses a person the controller's allow lists leave out. Each list that
 * is set must let the person in: allowed users (by email or subject), allowed email
 * domains, and allowed groups (any one of them).
 */
export function checkAllowed (id: IdpIdentity, s: Pick<OidcSettings, 'allowedUsers' | 'allowedDomains' | 'allowedGroups' | 'groupsClaim'>): void {
  const who = id.email ?? `subject ${id.subject}`
  const email = id.email?.toLowerCase()
  if (s.allowedUsers.length > 0 && !s.allowedUsers.includes(email ?? '') && !s.allowedUsers.includes(id.subject.toLowerCase())) {
    throw loginRefused('user_not_allowed', `${who} is not among the users allowed to log in to this mesh (--oidc-allowed-users); ask an admin to add you`)
  }
  if (s.allowedDomains.length > 0) {
    const domain = email?.split('@')[1]
    if (domain === undefined) throw loginRefused('domain_not_allowed', `the identity provider gave no verified email for ${who}, and only emails in ${s.allowedDomains.join(', ')} may log in`)
    if (!s.allowedDomains.includes(domain)) throw loginRefused('domain_not_allowed', `${who} is not in an allowed email domain (${s.allowedDomains.join(', ')}); log in with an account of one of those domains`)
  }
  if (s.allowedGroups.length > 0 && !id.groups.some(g => s.allowedGroups.includes(g))) {
    const has = id.groups.length > 0 ? `is in ${id.groups.join(', ')}` : `is in no group (the provider sent no '${s.groupsClaim}' claim)`
    throw loginRefused('group_not_allowed', `${who} ${has}, but only members of ${s.allowedGroups.join(', ')} may log in; ask an admin of the identity provider to add you to one`)
  }
}

/**
 * checkAmr refuses a login whose ID token does not carry every `amr` value the controller
 * requires (--oidc-require-amr), naming the ones missing.
 */
export function checkAmr (id: IdpIdentity, amr: readonly string[], required: readonly string[]): void {
  const missing = required.filter(r => !amr.includes(r))
  if (missing.length === 0) return
  const got = amr.length > 0 ? `authenticated with ${amr.join(', ')}` : 'the identity provider did not say how they authenticated (no amr claim)'
  throw loginRefused('amr_missing', `${id.email ?? `subject ${id.subject}`} ${got}, but this mesh requires ${required.join(' and ')} (--oidc-require-amr); log in again with ${missing.join(' and ')} (for example a security key), or ask an admin of the identity provider to enable it`)
}
