import * as client from 'openid-client'
import { WarrenError } from '@warren/protocol'
import type { IdpIdentity } from '../state.js'
import type { OidcSettings } from './oidc-options.js'
import { identityFromClaims, loginRefused } from './identity.js'

/** LoginChecks are one login's secrets, checked when the provider redirects back. */
export interface LoginChecks {
  state: string
  nonce: string
  pkceVerifier: string
}

/** IdpAnswer is what a completed authorization-code exchange (or a refresh) gave. */
export interface IdpAnswer {
  identity: IdpIdentity
  /** the ID token's `amr` values (how the person authenticated); empty when it has none */
  amr: string[]
  /** present when the provider issued one (scope offline_access) */
  refreshToken?: string
}

/**
 * OidcClient is the controller's side of the authorization code flow with PKCE, through
 * openid-client: discovery, authorization URLs, and the code exchange with every ID
 * token check (signature, issuer, audience, expiry, nonce).
 */
export interface OidcClient {
  /** begin makes one login's authorization URL with a fresh state, nonce and PKCE verifier */
  begin: (redirectUrl: string) => Promise<{ url: string, checks: LoginChecks }>
  /** finish exchanges the code in `callbackUrl` and checks the ID token; refusals are 403 WarrenErrors */
  finish: (callbackUrl: URL, checks: LoginChecks) => Promise<IdpAnswer>
  /**
   * refresh asks the provider about `id` again with its refresh token (refresh grant, then
   * the new ID token's claims completed by userinfo). A provider that refuses the token (the
   * person was disabled or the grant revoked) gives a 403 `idp_refresh_refused`; a provider
   * that cannot be reached gives a 502 `idp_unavailable`.
   */
  refresh: (id: Pick<IdpIdentity, 'issuer' | 'subject'>, refreshToken: string) => Promise<IdpAnswer>
  /** ready resolves once discovery has worked (it is retried on the next login if it failed) */
  ready: () => Promise<void>
}

/** createOidcClient discovers the provider lazily, so a provider that is down does not stop the controller. */
export function createOidcClient (s: OidcSettings): OidcClient {
  let discovered: Promise<client.Configuration> | undefined
  const config = async (): Promise<client.Configuration> => {
    discovered ??= client.discovery(s.issuerUrl, s.clientId, s.clientSecret, undefined, {
      ...(s.issuerUrl.protocol === 'http:' ? { execute: [client.allowInsecureRequests] } : {}),
      ...(s.fetch !== undefined ? { [client.customFetch]: s.fetch } : {})
    })
    try {
      return await discovered
    } catch (e) {
      discovered = undefined
      throw new WarrenError('idp_unavailable', `cannot use the identity provider at ${s.issuer}: ${describeClientError(e, s)}; check --oidc-issuer and that the controller can reach it`, { status: 502, cause: e })
    }
  }
  return {
    ready: async () => { await config() },
    async begin (redirectUrl) {
      const cfg = await config()
      const checks: LoginChecks = { state: client.randomState(), nonce: client.randomNonce(), pkceVerifier: client.randomPKCECodeVerifier() }
      const url = client.buildAuthorizationUrl(cfg, {
        redirect_uri: redirectUrl,
        scope: s.scopes.join(' '),
        state: checks.state,
        nonce: checks.nonce,
        code_challenge: await client.calculatePKCECodeChallenge(checks.pkceVerifier),
        code_challenge_method: 'S256',
        ...(s.scopes.includes('offline_access') ? { prompt: 'consent' } : {})
      })
      return { url: url.href, checks }
    },
    async finish (callbackUrl, checks) {
      const cfg = await config()
      let tokens: Awaited<ReturnType<typeof client.authorizationCodeGrant>>
      try {
        tokens = await client.authorizationCodeGrant(cfg, callbackUrl, {
          pkceCodeVerifier: checks.pkceVerifier,
          expectedState: checks.state,
          expectedNonce: checks.nonce,
          idTokenExpected: true
        })
      } catch (e) {
        throw loginRefused(e instanceof client.AuthorizationResponseError ? 'idp_refused' : 'invalid_id_token', describeClientError(e, s))
      }
      return await answer(cfg, tokens, tokens.claims()!)
    },
    async refresh (id, refreshToken) {
      const cfg = await config()
      let tokens: Awaited<ReturnType<typeof client.refreshTokenGrant>>
      try {
        tokens = await client.refreshTokenGrant(cfg, refreshToken)
      } catch (e) {
        if (e instanceof client.ResponseBodyError && e.status >= 400 && e.status < 500) {
          throw new WarrenError('idp_refresh_refused', `the identity provider refused to refresh the login (${e.error}${e.error_description !== undefined ? `: ${e.error_description}` : ''}); the person was disabled there or the grant was revoked`, { status: 403 })
        }
        throw new WarrenError('idp_unavailable', `cannot check the login at the identity provider: ${describeClientError(e, s)}`, { status: 502, cause: e })
      }
      // A refresh need not carry an ID token; then userinfo alone says who the person is now.
      const claims = tokens.claims() ?? { iss: id.issuer, sub: id.subject }
      if (claims.sub !== id.subject) throw new WarrenError('idp_refresh_refused', `the identity provider answered the refresh for subject ${claims.sub}, not ${id.subject}`, { status: 403 })
      return await answer(cfg, tokens, claims)
    }
  }

  /** answer reads the person from a token answer's claims, completed by userinfo where they lack email, name or groups. */
  async function answer (cfg: client.Configuration, tokens: client.TokenEndpointResponse, claims: Record<string, unknown> & { sub: string }): Promise<IdpAnswer> {
    const needUserinfo = claims.email === undefined || claims[s.groupsClaim] === undefined || claims.name === undefined
    let userinfo: Record<string, unknown> | undefined
    if (needUserinfo && cfg.serverMetadata().userinfo_endpoint !== undefined) {
      userinfo = await client.fetchUserInfo(cfg, tokens.access_token, claims.sub).catch(() => undefined)
    }
    const identity = identityFromClaims(claims, userinfo, s.groupsClaim)
    const amr = Array.isArray(claims.amr) ? claims.amr.filter((a): a is string => typeof a === 'string') : []
    return { identity, amr, ...(tokens.refresh_token !== undefined ? { refreshToken: tokens.refresh_token } : {}) }
  }
}

/** describeClientError says in words what openid-client refused, for the user and the audit log. */
export function describeClientError (e: unknown, s: Pick<OidcSettings, 'issuer' | 'clientId'>): string {
  if (e instanceof client.AuthorizationResponseError) {
    return `the identity provider refused the login: ${e.error_description ?? e.error}`
  }
  if (e instanceof client.ResponseBodyError) {
    return `the identity provider did not accept the login code (${e.error}${e.error_description !== undefined ? `: ${e.error_description}` : ''}); it may have been used already or expired`
  }
  const inner = (e as { cause?: unknown }).cause
  const detail = (inner as { cause?: { claim?: string, claims?: Record<string, unknown> } } | undefined)?.cause
  const code = (e as { code?: string }).code
  if (code === 'OAUTH_JWT_CLAIM_COMPARISON_FAILED') {
    const got = detail?.claims?.[detail.claim ?? '']
    switch (detail?.claim) {
      case 'iss': return `the ID token was issued by ${String(got)}, not by the configured issuer ${s.issuer}`
      case 'aud': return `the ID token is meant for ${JSON.stringify(got)}, not for this controller's client id ${s.clientId}`
      case 'nonce': return 'the ID token\'s nonce does not match this login: it was made for another login (replayed or forged)'
      case 'azp': return `the ID token was issued to another client (azp ${String(got)})`
      default: return `the ID token's ${detail?.claim ?? 'claims'} do not match this login`
    }
  }
  if (code === 'OAUTH_JWT_TIMESTAMP_CHECK_FAILED') {
    const claim = detail?.claim
    return claim === 'exp' ? 'the ID token has expired; log in again (and check that the controller\'s and the provider\'s clocks agree)' : `the ID token's ${claim ?? 'time'} claim is not valid now; check that the controller's and the provider's clocks agree`
  }
  if (code === 'OAUTH_JSON_ATTRIBUTE_COMPARISON_FAILED') return `the provider's discovery document names another issuer than ${s.issuer}`
  if (code === 'OAUTH_INVALID_RESPONSE' && /signature/i.test((inner as Error | undefined)?.message ?? '')) return 'the ID token\'s signature does not verify with the provider\'s keys'
  const msg = (inner as Error | undefined)?.message ?? (e as Error).message
  return `the identity provider's answer was not accepted (${msg})`
}
