import { randomBytes } from 'node:crypto'
import {
  WarrenError, isWarrenError, LOGIN_CALLBACK_PATH,
  type Node, type RegisterRequest, type LoginStartResponse, type LoginWaitResponse
} from '@warren/protocol'
import type { ControllerState, IdpIdentity } from '../state.js'
import type { OidcClient, LoginChecks } from './oidc-client.js'
import type { OidcSettings } from './oidc-options.js'
import type { TokenVault } from './token-vault.js'
import { checkAllowed, checkAmr, loginRefused } from './identity.js'

/** LOGIN_PAGE_PATH is where login URLs point: `/login/<id>` redirects to the provider once. */
export const LOGIN_PAGE_PATH = '/login'
const MAX_PENDING = 10_000

/** LoginSession is one node's login, from its request to the user's answer at the provider. */
interface LoginSession {
  id: string
  waitToken: string
  req: RegisterRequest
  checks: LoginChecks
  authorizeUrl: string
  expires: number
  /** the login URL was opened (it works once) */
  opened: boolean
  /** the provider's answer arrived (it is used once) */
  answered: boolean
  result?: { node: Node } | { error: WarrenError }
  waiters: Set<() => void>
}

/** LoginDone is what the browser is shown once the provider sent the user back. */
export interface LoginDone { user: string, node: Node }

/**
 * LoginService runs logins for nodes without an auth key. A node's signed registration
 * starts one and gets a login URL (single use, expires) and a wait token; the user opens
 * the URL, which sends them to the provider with state, nonce and a PKCE challenge; the
 * provider sends them back to the callback, where the code is exchanged and the ID token
 * checked; then the allow lists decide, the user is found, linked or created, and the
 * node joins as that user. Every attempt on a login a node started that reaches a
 * decision leaves one audit entry: `login.ok` (with the node's `node.register` or
 * `node.reauth`) or `login.refused`.
 */
export interface LoginService {
  start: (req: RegisterRequest) => Promise<LoginStartResponse>
  /** wait answers once the login ended or after `waitMs`; a refused login throws its refusal */
  wait: (waitToken: string, waitMs: number) => Promise<LoginWaitResponse>
  /** open is the login URL: it gives the provider's authorization URL, once */
  open: (id: string) => Promise<string>
  /** callback takes the provider's redirect (the full URL it was called with) */
  callback: (query: URLSearchParams) => Promise<LoginDone>
  close: () => void
}

export interface LoginServiceInit {
  state: ControllerState
  client: OidcClient
  settings: OidcSettings
  vault: TokenVault
  /** publicUrl is the controller's URL as nodes and browsers reach it */
  publicUrl: () => string
  now?: () => number
}

export function createLoginService (init: LoginServiceInit): LoginService {
  const { state, client, settings, vault } = init
  const now = init.now ?? Date.now
  const byId = new Map<string, LoginSession>()
  const byToken = new Map<string, LoginSession>()
  const byState = new Map<string, LoginSession>()
  const redirectUrl = (): string => settings.redirectUrl ?? `${init.publicUrl()}${LOGIN_CALLBACK_PATH}`
  // Login links go where the redirect URI points, when it is given (a proxy or public name).
  const linkBase = (): string => settings.redirectUrl !== undefined ? new URL(settings.redirectUrl).origin : init.publicUrl()

  function prune (): void {
    const t = now()
    for (const s of byId.values()) if (s.expires <= t) forget(s)
  }
  function forget (s: LoginSession): void {
    byId.delete(s.id)
    byToken.delete(s.waitToken)
    byState.delete(s.checks.state)
    if (s.result === undefined) settle(s, { error: loginRefused('login_expired', 'the login was not completed in time; run \'warren up\' again for a new login URL') })
  }
  function settle (s: LoginSession, result: NonNullable<LoginSession['result']>): void {
    s.result = result
    for (const wake of s.waiters) wake()
    s.waiters.clear()
  }

  /** refuse ends a login with `error`, writing its audit entry, and throws it. */
  async function refuse (s: LoginSession, error: WarrenError, who?: IdpIdentity): Promise<never> {
    const actor = who !== undefined ? `idp:${who.email ?? who.subject}` : `machine:${s.req.machineKey}`
    await state.commit([], actor, 'login.refused', s.req.hostname, {
      reason: error.code,
      message: error.message,
      ...(who !== undefined ? { issuer: who.issuer, subject: who.subject, ...(who.email !== undefined ? { email: who.email } : {}), groups: who.groups } : {})
    })
    if (s.result === undefined) settle(s, { error })
    throw error
  }

  const sweep = setInterval(prune, 30_000)
  sweep.unref()

  return {
    async start (req) {
      await state.checkLogin(req)
      prune()
      if (byId.size >= MAX_PENDING) throw new WarrenError('too_many_logins', 'too many logins are waiting; retry in a minute', { status: 503 })
      const { url, checks } = await client.begin(redirectUrl())
      const s: LoginSession = {
        id: randomBytes(16).toString('base64url'),
        waitToken: randomBytes(24).toString('base64url'),
        req,
        checks,
        authorizeUrl: url,
        expires: now() + settings.loginTtlMs,
        opened: false,
        answered: false,
        waiters: new Set()
      }
      byId.set(s.id, s)
      byToken.set(s.waitToken, s)
      byState.set(checks.state, s)
      return { loginUrl: `${linkBase()}${LOGIN_PAGE_PATH}/${s.id}`, waitToken: s.waitToken, expires: new Date(s.expires).toISOString() }
    },

    async wait (token, waitMs) {
      prune()
      const found = byToken.get(token)
      if (found === undefined) throw new WarrenError('login_not_found', 'no login is waiting with this token (it expired or ended); run \'warren up\' again', { status: 404 })
      const s = found
      if (s.result === undefined) {
        await new Promise<void>(resolve => {
          const timer = setTimeout(done, waitMs)
          function done (): void { clearTimeout(timer); s.waiters.delete(done); resolve() }
          s.waiters.add(done)
        })
      }
      const result = s.result
      if (result === undefined) return { status: 'pending' }
      if ('error' in result) throw result.error
      return { status: 'done', node: result.node }
    },

    async open (id) {
      prune()
      const s = byId.get(id)
      if (s === undefined) throw new WarrenError('login_not_found', 'this login link is unknown or has expired; run \'warren up\' again on the node for a new one', { status: 404 })
      if (s.opened) {
        return await refuse(s, loginRefused('login_link_used', 'this login link was already used; a login link works once. Run \'warren up\' again on the node for a new one'))
      }
      s.opened = true
      return s.authorizeUrl
    },

    async callback (query) {
      prune()
      const s = byState.get(query.get('state') ?? '')
      // Not audited, like an unknown login link: anyone can send these, and no login is at stake.
      if (s === undefined) throw loginRefused('login_not_found', 'this login is unknown or has expired (the state does not match a waiting login); run \'warren up\' again on the node')
      if (s.answered) {
        return await refuse(s, loginRefused('login_replayed', 'this login was already completed; the provider\'s answer cannot be used twice'))
      }
      s.answered = true
      const callbackUrl = new URL(redirectUrl())
      callbackUrl.search = query.toString()
      let identity: IdpIdentity | undefined
      try {
        const answer = await client.finish(callbackUrl, s.checks)
        identity = answer.identity
        checkAllowed(identity, settings)
        checkAmr(identity, answer.amr, settings.requireAmr)
        const extra = answer.refreshToken !== undefined ? [vault.storeOp(identity, answer.refreshToken, new Date(now()).toISOString())] : []
        const { user } = await state.loginIdpUser(identity, extra)
        const node = await state.registerLoggedIn(s.req, user.name)
        settle(s, { node })
        return { user: user.email ?? user.name, node }
      } catch (e) {
        const error = isWarrenError(e) ? e : loginRefused('login_failed', `the login failed: ${(e as Error).message}`)
        return await refuse(s, error.status === 403 ? error : loginRefused(error.code, error.message), identity)
      }
    },

    close () {
      clearInterval(sweep)
      for (const s of byId.values()) forget(s)
    }
  }
}
