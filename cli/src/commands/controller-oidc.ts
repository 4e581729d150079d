import type { Command } from 'commander'
import { WarrenError, parseDuration } from '@warren/protocol'
import type { OidcOptions } from '@warren/controller'

/** OidcFlags are `controller serve`'s --oidc-* options as commander gives them. */
export interface OidcFlags {
  oidcIssuer?: string
  oidcClientId?: string
  oidcClientSecretFile?: string
  oidcScopes?: string
  oidcAllowedDomains?: string
  oidcAllowedUsers?: string
  oidcAllowedGroups?: string
  oidcGroupsClaim?: string
  oidcRedirectUrl?: string
  oidcRequireAmr?: string
  oidcRecheckInterval?: string
}

/** addOidcFlags adds the options that turn on login at an OpenID Connect identity provider. */
export function addOidcFlags (cmd: Command): Command {
  return cmd
    .option('--oidc-issuer <url>', 'let nodes join by logging in at this OpenID Connect provider (its issuer URL)')
    .option('--oidc-client-id <id>', 'the client id registered at the provider for this controller')
    .option('--oidc-client-secret-file <file>', 'file (mode 0600) holding the client secret')
    .option('--oidc-scopes <list>', 'scopes to ask for, comma-separated (default openid,email,profile; add groups, offline_access as the provider needs)')
    .option('--oidc-allowed-domains <list>', 'only emails in these domains may log in, comma-separated')
    .option('--oidc-allowed-users <list>', 'only these emails (or subjects) may log in, comma-separated')
    .option('--oidc-allowed-groups <list>', 'only members of one of these provider groups may log in, comma-separated')
    .option('--oidc-groups-claim <claim>', 'the ID token or userinfo claim that lists groups (default groups)')
    .option('--oidc-require-amr <list>', 'refuse logins whose ID token lacks these amr values, comma-separated (for example mfa,hwk)')
    .option('--oidc-recheck-interval <duration>', 'check each user with a refresh token again at the provider this often (default 15m; 0: only at login)')
    .option('--oidc-redirect-url <url>', 'the redirect URI registered at the provider (default: https://HOST:PORT/oidc/callback of --listen)')
}

const list = (v: string | undefined): string[] | undefined => v === undefined ? undefined : v.split(',').map(s => s.trim()).filter(s => s !== '')

/**
 * oidcOptions turns the --oidc-* flags into the controller's OIDC options, reading the
 * client secret from its file (which must be 0600). No flags: no login. Flags without
 * --oidc-issuer, or an issuer without a client id or secret, are refused with what to add.
 */
export async function oidcOptions (f: OidcFlags): Promise<OidcOptions | undefined> {
  const given = Object.entries(f).filter(([k, v]) => k.startsWith('oidc') && v !== undefined).map(([k]) => `--${k.replace(/[A-Z]/g, c => `-${c.toLowerCase()}`)}`)
  if (f.oidcIssuer === undefined) {
    if (given.length > 0) throw new WarrenError('invalid_input', `${given.join(', ')} need --oidc-issuer (the provider's issuer URL)`, { field: 'oidc-issuer' })
    return undefined
  }
  if (f.oidcClientId === undefined || f.oidcClientSecretFile === undefined) {
    throw new WarrenError('invalid_input', '--oidc-issuer needs --oidc-client-id and --oidc-client-secret-file (the client registered at the provider)', { field: f.oidcClientId === undefined ? 'oidc-client-id' : 'oidc-client-secret-file' })
  }
  const { readPrivateFile } = await import('@warren/relay')
  const clientSecret = await readPrivateFile(f.oidcClientSecretFile, { what: 'OIDC client secret file', howToFill: 'the client secret the provider shows for this client', field: 'oidc-client-secret-file' })
  const scopes = list(f.oidcScopes)
  const allowedDomains = list(f.oidcAllowedDomains)
  const allowedUsers = list(f.oidcAllowedUsers)
  const allowedGroups = list(f.oidcAllowedGroups)
  const requireAmr = list(f.oidcRequireAmr)
  return {
    issuer: f.oidcIssuer,
    clientId: f.oidcClientId,
    clientSecret,
    ...(scopes !== undefined ? { scopes } : {}),
    ...(allowedDomains !== undefined ? { allowedDomains } : {}),
    ...(allowedUsers !== undefined ? { allowedUsers } : {}),
    ...(allowedGroups !== undefined ? { allowedGroups } : {}),
    ...(f.oidcGroupsClaim !== undefined ? { groupsClaim: f.oidcGroupsClaim } : {}),
    ...(requireAmr !== undefined ? { requireAmr } : {}),
    ...(f.oidcRecheckInterval !== undefined ? { recheckIntervalMs: parseDuration(f.oidcRecheckInterval, 'oidc-recheck-interval') } : {}),
    ...(f.oidcRedirectUrl !== undefined ? { redirectUrl: f.oidcRedirectUrl } : {})
  }
}
