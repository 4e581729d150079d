import { DEFAULT_DOMAIN, type AuditEntry, type WireGuardKeyPair } from '@warren/protocol'
import type { Store, StoreOp } from './store.js'
import { createCommitCore, type StateEvents } from './state/commit-core.js'
import { createNodeTable } from './state/node-table.js'
import { createNodes, type NodeMethods } from './state/nodes.js'
import { createRouteMethods, type AutoApprove, type RouteMethods } from './state/routes.js'
import { createNodeAttrMethods, type NodeAttrMethods } from './state/node-attrs.js'
import { createRegistration, type Registration } from './state/registration.js'
import { createUsers, type UserMethods } from './state/users.js'
import { createAuthKeys, type AuthKeyMethods } from './state/auth-keys.js'
import { createApiKeys, type ApiKeyMethods } from './state/api-keys.js'
import { listAudit } from './state/audit.js'

export type { StateEventMap, StateEvents } from './state/commit-core.js'
export { DEFAULT_AUTH_KEY_EXPIRY } from './state/auth-keys.js'
export { DEFAULT_API_KEY_EXPIRY } from './state/api-keys.js'
export type { IdpIdentity, IdpLogin } from './state/users.js'

/**
 * ControllerState is the controller's model: users, nodes, auth keys, API keys and the
 * audit log, over a Store. Routes, the map server (controller/src/map/) and the policy
 * module (controller/src/policy/) all go through it.
 *
 * Reads are synchronous and come from memory. Every change is an async method whose
 * checks and memory update run alone (one serial queue, state/commit-core.ts); the
 * change and its audit entry go to disk as one batch (grouped with concurrent changes),
 * and the method resolves and events fire only once that batch is durable. Failed
 * checks throw a WarrenError with an HTTP `status` and change nothing. The parts live in
 * state/: nodes, registration, users, auth keys, API keys and the audit log.
 *
 * Map server contract:
 * - `events.on('node-upserted', (node, previous?) => ...)` fires after a node is created or
 *   any field of its `Node` view changes (status, name, tags, keys, online, endpoints,
 *   and a key reaching its expiry, found by `sweepExpired()`). `previous` is the view
 *   before the change (absent for a new node). lastSeen alone does not fire it.
 * - `events.on('node-removed', (node) => ...)` fires after a node is deleted.
 * - `nodeByMachineKey(key)` finds the node for a map session hello; `setOnline(id, bool)`,
 *   `touchLastSeen(id)` and `setEndpoints(id, endpoints)` are cheap (memory only;
 *   lastSeen is flushed to disk in the background) and may be called often.
 * - `deleteNode(id, 'map-server')` removes an ephemeral node after it stayed away.
 * - `domain`, `controllerKey` (X25519, for checking proofs) describe this controller.
 *
 * Policy module contract: `tagOwnersAllow` is given at construction (default: nobody
 * owns a tag); `events` also carries 'user-upserted' and 'user-removed'; `store.readPrefix`
 * and `commit(ops, actor, action, target)` persist its own records with an audit entry.
 */
export interface ControllerState extends NodeMethods, RouteMethods, NodeAttrMethods, UserMethods, AuthKeyMethods, ApiKeyMethods, Registration {
  readonly domain: string
  readonly controllerKey: WireGuardKeyPair
  /** the ULA /48 that mesh IPv6 addresses come from */
  readonly ulaPrefix: string
  readonly events: StateEvents
  readonly store: Store
  /** tagOwnersAllow says whether `user` may put `tag` on its nodes (the policy's tagOwners) */
  readonly tagOwnersAllow: (user: string | undefined, tag: string) => boolean

  /** listAudit returns up to `limit` entries with seq > `after`, oldest first (default: the newest 100) */
  listAudit: (opts?: { limit?: number, after?: number }) => AuditEntry[]
  /** commit writes extra ops (other modules' records) together with an audit entry, in the state's serial queue */
  commit: (ops: StoreOp[], actor: string, action: string, target: string, detail?: Record<string, unknown>) => Promise<void>
  /** flush writes pending lastSeen/lastUsed updates */
  flush: () => Promise<void>
  close: () => Promise<void>
}

export interface ControllerStateOptions {
  store: Store
  domain?: string
  /** certificate fingerprint embedded in the auth and API keys this controller prints */
  fingerprint?: string
  /** how long a node key stays valid after (re-)registration, ms; 0 = forever. Default 180 days */
  nodeKeyExpiryMs?: number
  /** how far a registration timestamp may be from our clock, ms. Default 5 minutes */
  maxClockSkewMs?: number
  /** tagOwnersAllow says whether `user` may put `tag` on its nodes (the policy's tagOwners); default: nobody */
  tagOwnersAllow?: (user: string | undefined, tag: string) => boolean
  /** autoApproveRoutes lists a node's advertised routes the policy's autoApprovers approve; default: none */
  autoApproveRoutes?: AutoApprove
  /** clock, for tests */
  now?: () => number
  /** called when an event listener throws, so a bad listener cannot fail a request */
  onListenerError?: (err: unknown, event: string) => void
}

export const DEFAULT_NODE_KEY_EXPIRY_MS = 180 * 86_400_000
const LAST_SEEN_FLUSH_MS = 30_000

/** createControllerState composes the state's parts over one commit core. */
export function createControllerState (opts: ControllerStateOptions): ControllerState {
  const { store } = opts
  const domain = opts.domain ?? DEFAULT_DOMAIN
  const tagOwnersAllow = opts.tagOwnersAllow ?? (() => false)
  const core = createCommitCore({ store, now: opts.now ?? Date.now, onListenerError: opts.onListenerError })
  const users = createUsers(core)
  const authKeys = createAuthKeys(core, users, opts.fingerprint)
  const apiKeys = createApiKeys(core, opts.fingerprint)
  const table = createNodeTable(core, domain)
  const registration = createRegistration(core, table, authKeys, {
    nodeKeyExpiryMs: opts.nodeKeyExpiryMs ?? DEFAULT_NODE_KEY_EXPIRY_MS,
    maxClockSkewMs: opts.maxClockSkewMs ?? 5 * 60_000,
    tagOwnersAllow
  })
  const flushTimer = setInterval(() => { void state.flush().catch(() => {}) }, LAST_SEEN_FLUSH_MS)
  flushTimer.unref()

  const state: ControllerState = {
    domain,
    controllerKey: store.controllerKey,
    ulaPrefix: store.meta.ulaPrefix,
    events: core.events,
    store,
    tagOwnersAllow,
    ...createNodes(core, table, users),
    ...createRouteMethods(core, table, opts.autoApproveRoutes ?? (() => [])),
    ...createNodeAttrMethods(core, table),
    ...registration,
    ...users.methods,
    ...authKeys.methods,
    ...apiKeys.methods,
    listAudit: q => listAudit(store.audit, q),
    commit: core.locked((ops: StoreOp[], actor: string, action: string, target: string, detail?: Record<string, unknown>) =>
      core.written([...ops, core.auditOp(actor, action, target, detail)], () => undefined)),
    flush: core.locked(() => ({
      durable: store.commit([...table.takeLastSeenOps(), ...apiKeys.takeLastUsedOps()], { durable: false }),
      done: () => undefined
    })),
    async close () {
      clearInterval(flushTimer)
      await state.flush().catch(() => {})
    }
  }
  return state
}
