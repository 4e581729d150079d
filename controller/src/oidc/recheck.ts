import { WarrenError, isWarrenError, type IdpRecheckResult } from '@warren/protocol'
import type { ControllerState } from '../state.js'
import type { UserRecord } from '../store.js'
import type { OidcClient } from './oidc-client.js'
import type { OidcSettings } from './oidc-options.js'
import type { SealedToken, TokenVault } from './token-vault.js'
import { checkAllowed } from './identity.js'

/** RECHECK_ACTOR is who the continuous check acts as in the audit log (expiring nodes). */
const RECHECK_ACTOR = 'idp-check'

/**
 * IdpRecheck is continuous verification: it asks the identity provider again about each
 * user who logged in with a refresh token (scope offline_access), at an interval and on
 * demand. New groups replace the stored ones, so policy groups with `idp:` members follow
 * at once; a user the provider refuses (disabled, grant revoked) or the allow lists now
 * leave out loses every node (they are expired: the user must log in again). A provider
 * that cannot be reached changes nothing.
 */
export interface IdpRecheck {
  /** run checks one user (by name) or all of them now, one after the other */
  run: (user?: string) => Promise<IdpRecheckResult[]>
  close: () => void
}

export interface IdpRecheckInit {
  state: ControllerState
  client: OidcClient
  settings: OidcSettings
  vault: TokenVault
  /** onTrouble hears what a periodic check could not do: a user the provider could not be asked about, or a run that failed */
  onTrouble?: (message: string, user?: string) => void
}

export function createIdpRecheck (init: IdpRecheckInit): IdpRecheck {
  const { state, client, settings, vault } = init
  let queue: Promise<unknown> = Promise.resolve()

  async function checkOne (u: UserRecord & { idp: NonNullable<UserRecord['idp']> }): Promise<IdpRecheckResult> {
    const id = { issuer: u.idp.issuer, subject: u.idp.subject }
    const stored = await state.store.readPrefix(vault.storeKey(id))
    const sealed = stored[0]?.[1] as SealedToken | undefined
    if (sealed === undefined) return { user: u.name, outcome: 'no-token', groups: u.idp.groups }
    let groups: string[]
    try {
      const answer = await client.refresh(id, vault.open(id, sealed))
      checkAllowed(answer.identity, settings)
      groups = [...answer.identity.groups].sort()
      const rotated = answer.refreshToken !== undefined ? [vault.storeOp(id, answer.refreshToken, new Date().toISOString())] : []
      const changed = groups.join('\n') !== u.idp.groups.join('\n')
      if (!await state.recheckIdpUser(u.name, u.idp.lastLogin, groups, rotated, changed ? { outcome: 'changed', groups, previous: u.idp.groups } : undefined)) return loggedInMeanwhile(u)
      return { user: u.name, outcome: changed ? 'changed' : 'unchanged', groups }
    } catch (e) {
      if (!isWarrenError(e) || e.status !== 403) {
        const message = isWarrenError(e) ? e.message : `the check failed: ${(e as Error).message}`
        return { user: u.name, outcome: 'unavailable', groups: u.idp.groups, message }
      }
      if (!await refuse(u, e)) return loggedInMeanwhile(u)
      return { user: u.name, outcome: 'refused', groups: [], message: e.message }
    }
  }

  /**
   * loggedInMeanwhile answers a check that a login overtook: the login's groups and refresh
   * token are newer than what the provider told the check (a refusal may even have been of
   * the token the login replaced), so they stand.
   */
  function loggedInMeanwhile (u: UserRecord): IdpRecheckResult {
    return { user: u.name, outcome: 'unchanged', groups: state.store.users.get(u.id)?.idp?.groups ?? [], message: 'the user logged in while the check ran; that login\'s answer stands' }
  }

  /** refuse takes away what the user's login gave: its groups, its refresh token, and its nodes; false when a login came in meanwhile. */
  async function refuse (u: UserRecord & { idp: NonNullable<UserRecord['idp']> }, e: WarrenError): Promise<boolean> {
    const owned = state.listNodes().filter(n => n.user === u.name && n.status !== 'expired')
    const refused = await state.recheckIdpUser(u.name, u.idp.lastLogin, [], [{ type: 'raw-del', key: vault.storeKey(u.idp) }],
      { outcome: 'refused', reason: e.code, message: e.message, expiredNodes: owned.map(n => n.name) })
    if (refused) for (const n of owned) await state.expireNode(n.id, RECHECK_ACTOR)
    return refused
  }

  async function runAll (name?: string): Promise<IdpRecheckResult[]> {
    const users = [...state.store.users.values()].filter((u): u is UserRecord & { idp: NonNullable<UserRecord['idp']> } => u.idp !== undefined)
    if (name !== undefined) {
      const user = state.getUser(name)
      if (user === undefined) throw new WarrenError('user_not_found', `user '${name}' does not exist; 'warren admin users list' shows them`, { status: 404, field: 'user' })
      if (!users.some(u => u.name === name)) throw new WarrenError('user_not_idp', `user '${name}' has never logged in at the identity provider, so there is nothing to check`, { status: 409, field: 'user' })
    }
    const results: IdpRecheckResult[] = []
    for (const u of users) if (name === undefined || u.name === name) results.push(await checkOne(u))
    return results
  }

  const run = async (name?: string): Promise<IdpRecheckResult[]> => {
    const next = queue.then(async () => await runAll(name))
    queue = next.catch(() => undefined)
    return await next
  }

  const timer = settings.recheckIntervalMs > 0
    ? setInterval(() => {
      run().then(results => {
        for (const r of results) if (r.outcome === 'unavailable') init.onTrouble?.(r.message ?? 'the provider could not be asked', r.user)
      }, (err: unknown) => { init.onTrouble?.((err as Error).message) })
    }, settings.recheckIntervalMs)
    : undefined
  timer?.unref()

  return {
    run,
    close () { if (timer !== undefined) clearInterval(timer) }
  }
}
