import { WarrenError } from '@warren/protocol'

/**
 * OidcOptions turn on login at an OpenID Connect identity provider: nodes that join
 * without an auth key print a login URL, and whoever logs in there owns the node.
 */
export interface OidcOptions {
  /** the provider's issuer URL (discovery reads `<issuer>/.well-known/openid-configuration`) */
  issuer: string
  clientId: string
  /** the client secret; the CLI reads it from a 0600 file, never from the command line */
  clientSecret: string
  /** scopes to ask for; `openid` must be among them. Default: openid, email, profile */
  scopes?: string[]
  /** only people whose email is in one of these domains may log in */
  allowedDomains?: string[]
  /** only these people (emails, or subjects for providers without email) may log in */
  allowedUsers?: string[]
  /** only members of one of these groups (from `groupsClaim`) may log in */
  allowedGroups?: string[]
  /** the claim listing the person's groups (default `groups`) */
  groupsClaim?: string
  /** logins whose ID token's `amr` lacks any of these values are refused (for example mfa, hwk) */
  requireAmr?: string[]
  /** how often each user with a refresh token is checked again at the provider, ms (default 15 minutes; 0: never) */
  recheckIntervalMs?: number
  /** the redirect URI registered at the provider; default `<controller URL>/oidc/callback` */
  redirectUrl?: string
  /** how long a login URL stays valid, ms (default 10 minutes) */
  loginTtlMs?: number
  /** fetch for the provider's endpoints (tests that tamper with answers); default: global fetch */
  fetch?: typeof fetch
}

/** OidcSettings are OidcOptions checked, with defaults filled in. */
export interface OidcSettings extends Required<Omit<OidcOptions, 'redirectUrl' | 'fetch'>> {
  issuerUrl: URL
  redirectUrl?: string
  fetch?: typeof fetch
}

export const DEFAULT_OIDC_SCOPES = ['openid', 'email', 'profile']
export const DEFAULT_GROUPS_CLAIM = 'groups'
const DEFAULT_LOGIN_TTL_MS = 10 * 60_000
export const DEFAULT_RECHECK_INTERVAL_MS = 15 * 60_000

/**
 * checkOidcOptions refuses options that cannot work (a malformed issuer, plain HTTP to a
 * remote issuer, scopes without `openid`), naming the flag to fix, and fills in defaults.
 * Plain HTTP is accepted for loopback issuers only, for local test providers.
 */
export function checkOidcOptions (o: OidcOptions): OidcSettings {
  let issuerUrl: URL
  try {
    issuerUrl = new URL(o.issuer)
  } catch {
    throw new WarrenError('invalid_input', `--oidc-issuer '${o.issuer}' is not a URL; give the provider's issuer, for example https://auth.example.com/application/o/warren/`, { field: 'oidc-issuer' })
  }
  if (issuerUrl.protocol !== 'https:' && !(issuerUrl.protocol === 'http:' && isLoopbackHost(issuerUrl.hostname))) {
    throw new WarrenError('invalid_input', `--oidc-issuer '${o.issuer}' must be an https URL (plain http only on loopback, for tests)`, { field: 'oidc-issuer' })
  }
  if (o.clientId.trim() === '') throw new WarrenError('invalid_input', '--oidc-client-id must not be empty; use the client id registered at the provider', { field: 'oidc-client-id' })
  if (o.clientSecret === '') throw new WarrenError('invalid_input', 'the OIDC client secret is empty; put the secret from the provider in --oidc-client-secret-file', { field: 'oidc-client-secret-file' })
  const scopes = o.scopes ?? DEFAULT_OIDC_SCOPES
  if (!scopes.includes('openid')) {
    throw new WarrenError('invalid_input', `--oidc-scopes '${scopes.join(',')}' must include openid (for example openid,email,profile,groups)`, { field: 'oidc-scopes' })
  }
  if (o.redirectUrl !== undefined && !URL.canParse(o.redirectUrl)) {
    throw new WarrenError('invalid_input', `--oidc-redirect-url '${o.redirectUrl}' is not a URL; give the controller's public URL with /oidc/callback`, { field: 'oidc-redirect-url' })
  }
  if (o.recheckIntervalMs !== undefined && !(o.recheckIntervalMs >= 0)) {
    throw new WarrenError('invalid_input', '--oidc-recheck-interval must be a duration such as 15m, or 0 to check only at login', { field: 'oidc-recheck-interval' })
  }
  return {
    issuer: o.issuer,
    issuerUrl,
    clientId: o.clientId,
    clientSecret: o.clientSecret,
    scopes,
    allowedDomains: (o.allowedDomains ?? []).map(d => d.toLowerCase().replace(/^@/, '')),
    allowedUsers: (o.allowedUsers ?? []).map(u => u.toLowerCase()),
    allowedGroups: o.allowedGroups ?? [],
    groupsClaim: o.groupsClaim ?? DEFAULT_GROUPS_CLAIM,
    loginTtlMs: o.loginTtlMs ?? DEFAULT_LOGIN_TTL_MS,
    requireAmr: o.requireAmr ?? [],
    recheckIntervalMs: o.recheckIntervalMs ?? DEFAULT_RECHECK_INTERVAL_MS,
    ...(o.redirectUrl !== undefined ? { redirectUrl: o.redirectUrl } : {}),
    ...(o.fetch !== undefined ? { fetch: o.fetch } : {})
  }
}

function isLoopbackHost (host: string): boolean {
  return host === 'localhost' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host)
}
