import {
  WarrenError, parseCredential, newCredential, isKeyExpired,
  type ApiKeyInfo, type CreateApiKeyRequest
} from '@warren/protocol'
import type { ApiKeyRecord, StoreOp } from '../store.js'
import type { CommitCore } from './commit-core.js'
import { keyExpiryAfter, secretMatches } from './key-expiry.js'

export const DEFAULT_API_KEY_EXPIRY = '90d'

/** ApiKeyMethods manage the admin API's bearer keys (`wrnapi-...`). */
export interface ApiKeyMethods {
  listApiKeys: () => ApiKeyInfo[]
  createApiKey: (req: CreateApiKeyRequest, actor: string) => Promise<{ key: string, apiKey: ApiKeyInfo }>
  expireApiKey: (id: string, actor: string) => Promise<ApiKeyInfo>
  /** authenticateApiKey checks a `wrnapi-...` key and returns its public view */
  authenticateApiKey: (key: string) => ApiKeyInfo
}

export interface ApiKeys {
  methods: ApiKeyMethods
  /** takeLastUsedOps gives the puts for lastUsed times not yet written, and forgets them */
  takeLastUsedOps: () => StoreOp[]
}

export function createApiKeys (core: CommitCore, fingerprint: string | undefined): ApiKeys {
  const { store, locked, auditOp, written } = core
  const dirty = new Set<string>()

  /** unusable says why a key may not be used, or undefined when it may. */
  function unusable (rec: ApiKeyRecord): WarrenError | undefined {
    if (rec.revoked) return new WarrenError('api_key_revoked', `API key ${rec.id} was revoked; create a new one`, { status: 401 })
    if (isKeyExpired(rec.expires, core.now())) return new WarrenError('api_key_expired', `API key ${rec.id} expired at ${rec.expires}; create a new one`, { status: 401 })
    return undefined
  }

  const methods: ApiKeyMethods = {
    listApiKeys: () => [...store.apiKeys.values()].map(apiKeyView),
    createApiKey: locked((req: CreateApiKeyRequest, actor: string) => {
      const expires = keyExpiryAfter(req.expiry ?? DEFAULT_API_KEY_EXPIRY, 'expiry', core.now())
      const cred = newCredential('api', fingerprint)
      const rec: ApiKeyRecord = { id: cred.id, created: core.iso(), expires, revoked: false, secretHash: cred.secretHash }
      if (req.description !== undefined) rec.description = req.description
      return written([{ type: 'put', table: 'apikey', value: rec }, auditOp(actor, 'apikey.create', rec.id, { expires })], () => ({ key: cred.key, apiKey: apiKeyView(rec) }))
    }),
    expireApiKey: locked((id: string, actor: string) => {
      const k = store.apiKeys.get(id)
      if (k === undefined) throw new WarrenError('api_key_not_found', `no API key with id '${id}'; 'warren admin apikeys list' shows them`, { status: 404 })
      if (k.revoked) return core.unchanged(apiKeyView(k))
      const next = { ...k, revoked: true }
      return written([{ type: 'put', table: 'apikey', value: next }, auditOp(actor, 'apikey.expire', id)], () => apiKeyView(next))
    }),
    authenticateApiKey (key) {
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
      rec.lastUsed = core.iso()
      dirty.add(rec.id)
      return apiKeyView(rec)
    }
  }
  return {
    methods,
    takeLastUsedOps () {
      const ops: StoreOp[] = []
      for (const id of dirty) {
        const k = store.apiKeys.get(id)
        if (k !== undefined) ops.push({ type: 'put', table: 'apikey', value: k })
      }
      dirty.clear()
      return ops
    }
  }
}

function apiKeyView (k: ApiKeyRecord): ApiKeyInfo {
  const { secretHash: _, ...info } = k
  return info
}
