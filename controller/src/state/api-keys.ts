import {
  WarrenError, parseCredential, newCredential, isKeyExpired,
  type ApiKeyInfo, type ApiKeyScope, type CreateApiKeyRequest
} from '@warren/protocol'
import type { ApiKeyRecord, StoreOp } from '../store.js'
import type { CommitCore } from './commit-core.js'
import { keyExpiryAfter, secretMatches } from './key-expiry.js'
import { createPendingWrites } from './pending-writes.js'

export const DEFAULT_API_KEY_EXPIRY = '90d'
const API_KEY_ACTOR = 'apikey:'

/** RELAY_KEY_HOWTO says how to make the key a standalone relay needs. */
const RELAY_KEY_HOWTO = 'create one with \'warren admin apikeys create --scope relay\' and give it to \'warren relay serve --key-file FILE\''

/**
 * ApiKeyMethods manage the bearer keys (`wrnapi-...`). A key minted with another API
 * key (actor `apikey:<id>`) is that key's child: it expires no later than its parent and
 * stops working as soon as any key it descends from is revoked or expired. Keys minted by
 * the local admin have no parent. A key's scope says where it is accepted: an `admin` key
 * at the admin API only, a `relay` key at the relay link only.
 */
export interface ApiKeyMethods {
  listApiKeys: () => ApiKeyInfo[]
  createApiKey: (req: CreateApiKeyRequest, actor: string) => Promise<{ key: string, apiKey: ApiKeyInfo }>
  expireApiKey: (id: string, actor: string) => Promise<ApiKeyInfo>
  /**
   * authenticateApiKey checks a `wrnapi-...` key, the keys it was created with, and that its
   * scope is `scope` (403 `forbidden_scope` otherwise), and returns its public view
   */
  authenticateApiKey: (key: string, scope: ApiKeyScope) => ApiKeyInfo
}

export interface ApiKeys {
  methods: ApiKeyMethods
  /** takeLastUsedOps gives the puts for lastUsed times not yet written, and forgets them */
  takeLastUsedOps: () => StoreOp[]
}

export function createApiKeys (core: CommitCore, fingerprint: string | undefined): ApiKeys {
  const { store, locked, auditOp, written } = core
  const unwritten = createPendingWrites(store.apiKeys, value => ({ type: 'put', table: 'apikey', value }))

  /** unusable says why a key (or a key it descends from) may not be used, or undefined when it may. */
  function unusable (rec: ApiKeyRecord): WarrenError | undefined {
    if (rec.revoked) return new WarrenError('api_key_revoked', `API key ${rec.id} was revoked; create a new one`, { status: 401 })
    if (isKeyExpired(rec.expires, core.now())) return new WarrenError('api_key_expired', `API key ${rec.id} expired at ${rec.expires}; create a new one`, { status: 401 })
    let parentId = rec.parentId
    // A parent is always older than its child, so the walk ends.
    while (parentId !== undefined) {
      const parent = store.apiKeys.get(parentId)
      const madeWith = `API key ${rec.id} was created from API key ${parentId} (directly or through other keys), which`
      if (parent === undefined) return new WarrenError('api_key_revoked', `${madeWith} no longer exists; create a new one`, { status: 401 })
      if (parent.revoked) return new WarrenError('api_key_revoked', `${madeWith} was revoked; create a new one`, { status: 401 })
      if (isKeyExpired(parent.expires, core.now())) return new WarrenError('api_key_expired', `${madeWith} expired at ${parent.expires}; create a new one`, { status: 401 })
      parentId = parent.parentId
    }
    return undefined
  }

  const methods: ApiKeyMethods = {
    listApiKeys: () => [...store.apiKeys.values()].map(apiKeyView),
    createApiKey: locked((req: CreateApiKeyRequest, actor: string) => {
      let expires = keyExpiryAfter(req.expiry ?? DEFAULT_API_KEY_EXPIRY, 'expiry', core.now())
      const parent = actor.startsWith(API_KEY_ACTOR) ? store.apiKeys.get(actor.slice(API_KEY_ACTOR.length)) : undefined
      if (parent !== undefined) {
        const problem = unusable(parent)
        if (problem !== undefined) throw problem
        if (Date.parse(parent.expires) < Date.parse(expires)) expires = parent.expires
      }
      const cred = newCredential('api', fingerprint)
      const scope = req.scope ?? 'admin'
      const rec: ApiKeyRecord = { id: cred.id, scope, created: core.iso(), expires, revoked: false, secretHash: cred.secretHash }
      if (req.description !== undefined) rec.description = req.description
      if (parent !== undefined) rec.parentId = parent.id
      return written([{ type: 'put', table: 'apikey', value: rec }, auditOp(actor, 'apikey.create', rec.id, { expires, scope })], () => ({ key: cred.key, apiKey: apiKeyView(rec) }))
    }),
    expireApiKey: locked((id: string, actor: string) => {
      const k = store.apiKeys.get(id)
      if (k === undefined) throw new WarrenError('api_key_not_found', `no API key with id '${id}'; 'warren admin apikeys list' shows them`, { status: 404 })
      if (k.revoked) return core.unchanged(apiKeyView(k))
      const next = { ...k, revoked: true }
      return written([{ type: 'put', table: 'apikey', value: next }, auditOp(actor, 'apikey.expire', id)], () => apiKeyView(next))
    }),
    authenticateApiKey (key, scope) {
      let parsed
      try {
        parsed = parseCredential(key, 'api')
      } catch (e) {
        throw new WarrenError('invalid_api_key', (e as Error).message, { status: 401 })
      }
      const rec = store.apiKeys.get(parsed.id)
      if (rec === undefined || !secretMatches(rec.secretHash, parsed.secret)) {
        throw new WarrenError('invalid_api_key', 'this API key is not known to the controller; create one with \'warren admin apikeys create\' on the controller host', { status: 401 })
      }
      const problem = unusable(rec)
      if (problem !== undefined) throw problem
      if (scopeOf(rec) !== scope) throw wrongScope(rec, scope)
      rec.lastUsed = core.iso()
      unwritten.mark(rec.id)
      return apiKeyView(rec)
    }
  }
  return {
    methods,
    takeLastUsedOps: unwritten.take
  }
}

/** wrongScope is the 403 for a valid key used where its scope does not reach. */
function wrongScope (rec: ApiKeyRecord, wanted: ApiKeyScope): WarrenError {
  const message = wanted === 'relay'
    ? `API key ${rec.id} is an admin key, and a relay link takes only a relay key (an admin key on a relay host would give that host the whole admin API); ${RELAY_KEY_HOWTO}`
    : `API key ${rec.id} may only link a relay; use an admin key (made with 'warren admin apikeys create') for the admin API`
  return new WarrenError('forbidden_scope', message, { status: 403 })
}

/** scopeOf is a key's scope; keys stored before scopes existed were admin keys, and stay so. */
function scopeOf (k: ApiKeyRecord): ApiKeyScope {
  return (k as Partial<ApiKeyRecord>).scope ?? 'admin'
}

function apiKeyView (k: ApiKeyRecord): ApiKeyInfo {
  const { secretHash: _, parentId: _parent, ...info } = k
  return { ...info, scope: scopeOf(k) }
}
