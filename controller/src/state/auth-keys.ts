import {
  WarrenError, parseCredential, newCredential, isKeyExpired,
  type AuthKeyInfo, type CreateAuthKeyRequest
} from '@warren/protocol'
import type { AuthKeyRecord } from '../store.js'
import type { CommitCore } from './commit-core.js'
import type { Users } from './users.js'
import { keyExpiryAfter, secretMatches } from './key-expiry.js'

export const DEFAULT_AUTH_KEY_EXPIRY = '90d'

/** AuthKeyMethods manage the keys nodes join with (`wrnauth-...`), owned by a user or tags. */
export interface AuthKeyMethods {
  listAuthKeys: () => AuthKeyInfo[]
  createAuthKey: (req: CreateAuthKeyRequest, actor: string) => Promise<{ key: string, authKey: AuthKeyInfo }>
  expireAuthKey: (id: string, actor: string) => Promise<AuthKeyInfo>
}

export interface AuthKeys {
  methods: AuthKeyMethods
  /** usableAuthKey checks a presented key for a registration and returns its record, or throws a 401 */
  usableAuthKey: (key: string) => AuthKeyRecord
}

export function createAuthKeys (core: CommitCore, users: Users, fingerprint: string | undefined): AuthKeys {
  const { store, locked, auditOp, written } = core
  const methods: AuthKeyMethods = {
    listAuthKeys: () => [...store.authKeys.values()].map(authKeyView),
    createAuthKey: locked((req: CreateAuthKeyRequest, actor: string) => {
      const tags = [...new Set(req.tags ?? [])].sort()
      if (req.user === undefined && tags.length === 0) {
        throw new WarrenError('missing_owner', 'an auth key needs a user (--user U) or tags (--tags tag:x) to say who its nodes belong to', { field: 'user' })
      }
      if (req.user !== undefined) users.requireUser(req.user, 'user')
      const expires = keyExpiryAfter(req.expiry ?? DEFAULT_AUTH_KEY_EXPIRY, 'expiry', core.now())
      const cred = newCredential('auth', fingerprint)
      const rec: AuthKeyRecord = {
        id: cred.id,
        reusable: req.reusable ?? false,
        ephemeral: req.ephemeral ?? false,
        preapproved: req.preapproved ?? false,
        tags,
        created: core.iso(),
        expires,
        used: false,
        revoked: false,
        secretHash: cred.secretHash
      }
      if (req.user !== undefined) rec.user = req.user
      const detail = { reusable: rec.reusable, ephemeral: rec.ephemeral, preapproved: rec.preapproved, tags, expires, ...(rec.user !== undefined ? { user: rec.user } : {}) }
      return written([{ type: 'put', table: 'authkey', value: rec }, auditOp(actor, 'authkey.create', rec.id, detail)], () => ({ key: cred.key, authKey: authKeyView(rec) }))
    }),
    expireAuthKey: locked((id: string, actor: string) => {
      const k = store.authKeys.get(id)
      if (k === undefined) throw new WarrenError('auth_key_not_found', `no auth key with id '${id}'; 'warren admin keys list' shows them`, { status: 404 })
      if (k.revoked) return core.unchanged(authKeyView(k))
      const next = { ...k, revoked: true }
      return written([{ type: 'put', table: 'authkey', value: next }, auditOp(actor, 'authkey.expire', id)], () => authKeyView(next))
    })
  }
  return {
    methods,
    usableAuthKey (key) {
      let parsed
      try {
        parsed = parseCredential(key, 'auth')
      } catch (e) {
        throw new WarrenError('invalid_auth_key', (e as Error).message, { status: 401, field: 'authKey' })
      }
      const rec = store.authKeys.get(parsed.id)
      if (rec === undefined || !secretMatches(rec.secretHash, parsed.secret)) {
        throw new WarrenError('invalid_auth_key', 'this auth key is not known to the controller; check that it was copied whole, or create one with \'warren admin keys create\'', { status: 401, field: 'authKey' })
      }
      if (rec.revoked) {
        throw new WarrenError('auth_key_revoked', `auth key ${rec.id} was revoked by an admin; ask for a new one`, { status: 401, field: 'authKey' })
      }
      if (isKeyExpired(rec.expires, core.now())) {
        throw new WarrenError('auth_key_expired', `auth key ${rec.id} expired at ${rec.expires}; ask for a new one`, { status: 401, field: 'authKey' })
      }
      if (rec.used && !rec.reusable) {
        throw new WarrenError('auth_key_used', `auth key ${rec.id} is single-use and has already registered a node; create a new key, or a --reusable one`, { status: 401, field: 'authKey' })
      }
      if (rec.user !== undefined && !users.userExists(rec.user)) {
        throw new WarrenError('invalid_auth_key', `auth key ${rec.id} belongs to user '${rec.user}', who no longer exists`, { status: 401, field: 'authKey' })
      }
      return rec
    }
  }
}

function authKeyView (k: AuthKeyRecord): AuthKeyInfo {
  const { secretHash: _, ...info } = k
  return info
}
