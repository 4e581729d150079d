import { EventEmitter } from 'node:events'
import { randomBytes, timingSafeEqual } from 'node:crypto'
import {
  WarrenError, checkProtocolVersion, registerSigningPayload, isWireGuardKey,
  REGISTER_DOMAIN, parseCredential, newCredential, hashSecret, parseDuration, checkNodeName,
  DEFAULT_DOMAIN,
  type Node, type User, type AuthKeyInfo, type ApiKeyInfo, type AuditEntry, type RegisterRequest,
  type CreateAuthKeyRequest, type CreateApiKeyRequest, type CreateUserRequest, type WireGuardKeyPair
} from '@warren/protocol'
import type { Store, StoreOp, NodeRecord, UserRecord, AuthKeyRecord, ApiKeyRecord } from './store.js'
import { createMutex } from './mutex.js'
import { nextIPv4, meshIPv6 } from './ipam.js'
import { uniqueNodeName } from './names.js'
import { createWireGuardProofVerifier } from './proof.js'
import { verifyMachineSignature } from './map/verify.js'

/**
 * ControllerState is the controller's model: users, nodes, auth keys, API keys and the
 * audit log, over a Store. Routes, the map server (controller/src/map/) and the policy
 * module (controller/src/policy/) all go through it.
 *
 * Reads are synchronous and come from memory. Every change is an async method whose
 * checks and memory update run alone (one mutex); the change and its audit entry go to
 * disk as one batch (grouped with concurrent changes), and the method resolves and
 * events fire only once that batch is durable. Failed checks throw a WarrenError with
 * an HTTP `status` and change nothing.
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
 *   `recordPresence(id, {online, endpoints, lastSeen})` is the map service's way to
 *   store the same facts: it emits nothing, since the map service sent them already.
 * - `deleteNode(id, 'map-server')` removes an ephemeral node after it stayed away.
 * - `domain`, `controllerKey` (X25519, for checking proofs) describe this controller.
 *
 * Policy module contract: `tagOwnersAllow` may be replaced (default: nobody owns a
 * tag); `events` also carries 'user-upserted' and 'user-removed'; `store.readPrefix`
 * and `commit(ops, actor, action, target)` persist its own records with an audit entry.
 */
export interface ControllerState {
  readonly domain: string
  readonly controllerKey: WireGuardKeyPair
  /** the ULA /48 that mesh IPv6 addresses come from */
  readonly ulaPrefix: string
  readonly events: StateEvents
  readonly store: Store
  /** tagOwnersAllow says whether `user` may put `tag` on its nodes (the policy's tagOwners) */
  tagOwnersAllow: (user: string | undefined, tag: string) => boolean

  listNodes: () => Node[]
  /** getNode finds a node by id or by name */
  getNode: (idOrName: string) => Node | undefined
  nodeByMachineKey: (machineKey: string) => Node | undefined
  nodeRecord: (id: string) => Readonly<NodeRecord> | undefined
  setOnline: (id: string, online: boolean) => void
  touchLastSeen: (id: string) => void
  setEndpoints: (id: string, endpoints: string[]) => void
  /** recordPresence stores the map service's facts about a node's session; unlike setOnline/setEndpoints it emits nothing */
  recordPresence: (id: string, presence: { online?: boolean, endpoints?: string[], lastSeen?: string }) => void
  register: (req: RegisterRequest) => Promise<Node>
  approveNode: (idOrName: string, actor: string) => Promise<Node>
  renameNode: (idOrName: string, name: string, actor: string) => Promise<Node>
  expireNode: (idOrName: string, actor: string) => Promise<Node>
  setTags: (idOrName: string, tags: string[], actor: string) => Promise<Node>
  deleteNode: (idOrName: string, actor: string) => Promise<Node>
  /** sweepExpired emits node-upserted for nodes whose key expired since the last sweep */
  sweepExpired: () => void

  listUsers: () => User[]
  getUser: (name: string) => User | undefined
  createUser: (req: CreateUserRequest, actor: string) => Promise<User>
  deleteUser: (name: string, actor: string) => Promise<User>

  listAuthKeys: () => AuthKeyInfo[]
  createAuthKey: (req: CreateAuthKeyRequest, actor: string) => Promise<{ key: string, authKey: AuthKeyInfo }>
  expireAuthKey: (id: string, actor: string) => Promise<AuthKeyInfo>

  listApiKeys: () => ApiKeyInfo[]
  createApiKey: (req: CreateApiKeyRequest, actor: string) => Promise<{ key: string, apiKey: ApiKeyInfo }>
  expireApiKey: (id: string, actor: string) => Promise<ApiKeyInfo>
  /** authenticateApiKey checks a `wrnapi-...` key and returns its record's public view */
  authenticateApiKey: (key: string) => ApiKeyInfo

  /** listAudit returns up to `limit` entries with seq > `after`, oldest first (default: the newest 100) */
  listAudit: (opts?: { limit?: number, after?: number }) => AuditEntry[]
  /** commit writes extra ops (other modules' records) together with an audit entry, under the state lock */
  commit: (ops: StoreOp[], actor: string, action: string, target: string, detail?: Record<string, unknown>) => Promise<void>
  /** flush writes pending lastSeen/lastUsed updates */
  flush: () => Promise<void>
  close: () => Promise<void>
}

/** Deferred is a committed change: `durable` resolves when it is on disk, then `done` gives the result. */
interface Deferred<R> { durable: Promise<void>, done: () => R }

export interface StateEventMap {
  'node-upserted': [node: Node, previous: Node | undefined]
  'node-removed': [node: Node]
  'user-upserted': [user: User]
  'user-removed': [user: User]
}
export type StateEvents = EventEmitter<StateEventMap>

export interface ControllerStateOptions {
  store: Store
  domain?: string
  /** certificate fingerprint embedded in the auth and API keys this controller prints */
  fingerprint?: string
  /** how long a node key stays valid after (re-)registration, ms; 0 = forever. Default 180 days */
  nodeKeyExpiryMs?: number
  /** how far a registration timestamp may be from our clock, ms. Default 5 minutes */
  maxClockSkewMs?: number
  /** clock, for tests */
  now?: () => number
  /** called when an event listener throws, so a bad listener cannot fail a request */
  onListenerError?: (err: unknown, event: string) => void
}

export const DEFAULT_NODE_KEY_EXPIRY_MS = 180 * 86_400_000
export const DEFAULT_AUTH_KEY_EXPIRY = '90d'
export const DEFAULT_API_KEY_EXPIRY = '90d'
const LAST_SEEN_FLUSH_MS = 30_000

export function createControllerState (opts: ControllerStateOptions): ControllerState {
  const { store } = opts
  const domain = opts.domain ?? DEFAULT_DOMAIN
  const now = opts.now ?? Date.now
  const nodeKeyExpiryMs = opts.nodeKeyExpiryMs ?? DEFAULT_NODE_KEY_EXPIRY_MS
  const maxClockSkewMs = opts.maxClockSkewMs ?? 5 * 60_000
  const mutex = createMutex()
  const verifyWireGuardProof = createWireGuardProofVerifier(store.controllerKey.privateKey, store.controllerKey.publicKey)
  const events: StateEvents = new EventEmitter<StateEventMap>()
  events.setMaxListeners(0)

  // Indexes over store.nodes, kept in step by applyNodeChange.
  const byName = new Map<string, string>()
  const byMachineKey = new Map<string, string>()
  const byWgKey = new Map<string, string>()
  for (const n of store.nodes.values()) index(n)
  const userByName = new Map([...store.users.values()].map(u => [u.name, u.id]))
  // Runtime facts, not persisted: a restarted controller learns them again from map sessions.
  const online = new Set<string>()
  const endpoints = new Map<string, string[]>()
  const dirtyNodes = new Set<string>()
  const dirtyApiKeys = new Set<string>()
  // Nodes whose key had expired at the last sweep, so the sweep reports each once.
  const seenExpired = new Set<string>()
  for (const n of store.nodes.values()) if (isExpired(n)) seenExpired.add(n.id)
  const flushTimer = setInterval(() => { void state.flush().catch(() => {}) }, LAST_SEEN_FLUSH_MS)
  flushTimer.unref()

  function index (n: NodeRecord): void {
    byName.set(n.name, n.id)
    byMachineKey.set(n.machineKey, n.id)
    byWgKey.set(n.wgKey, n.id)
  }
  function unindex (n: NodeRecord): void {
    byName.delete(n.name)
    byMachineKey.delete(n.machineKey)
    byWgKey.delete(n.wgKey)
  }

  function iso (t = now()): string { return new Date(t).toISOString() }
  function isExpired (n: NodeRecord): boolean {
    return n.keyExpiry !== undefined && Date.parse(n.keyExpiry) <= now()
  }

  function view (n: NodeRecord): Node {
    const out: Node = {
      id: n.id,
      name: n.name,
      fqdn: `${n.name}.${domain}`,
      tags: [...n.tags],
      machineKey: n.machineKey,
      wgKey: n.wgKey,
      ipv4: n.ipv4,
      ipv6: n.ipv6,
      status: isExpired(n) ? 'expired' : n.approved ? 'active' : 'pending',
      ephemeral: n.ephemeral,
      online: online.has(n.id),
      created: n.created,
      endpoints: [...(endpoints.get(n.id) ?? [])]
    }
    if (n.user !== undefined) out.user = n.user
    if (n.lastSeen !== undefined) out.lastSeen = n.lastSeen
    if (n.keyExpiry !== undefined) out.keyExpiry = n.keyExpiry
    return out
  }
  function userView (u: UserRecord): User {
    return u.email === undefined ? { id: u.id, name: u.name, created: u.created } : { id: u.id, name: u.name, email: u.email, created: u.created }
  }
  function authKeyView (k: AuthKeyRecord): AuthKeyInfo {
    const { secretHash: _, ...info } = k
    return info
  }
  function apiKeyView (k: ApiKeyRecord): ApiKeyInfo {
    const { secretHash: _, ...info } = k
    return info
  }

  function emit<K extends keyof StateEventMap> (event: K, ...args: StateEventMap[K]): void {
    for (const listener of events.listeners(event)) {
      try {
        (listener as (...a: StateEventMap[K]) => void)(...args)
      } catch (err) {
        opts.onListenerError?.(err, event)
      }
    }
  }

  function findRecord (idOrName: string): NodeRecord | undefined {
    return store.nodes.get(idOrName) ?? store.nodes.get(byName.get(idOrName) ?? '')
  }
  function requireRecord (idOrName: string): NodeRecord {
    const n = findRecord(idOrName)
    if (n === undefined) {
      throw new WarrenError('node_not_found', `no node with id or name '${idOrName}'; 'warren admin nodes list' shows them`, { status: 404 })
    }
    return n
  }

  let auditSeq = store.meta.auditSeq
  function auditOp (actor: string, action: string, target: string, detail?: Record<string, unknown>): StoreOp {
    const entry: AuditEntry = { seq: ++auditSeq, time: iso(), actor, action, target }
    if (detail !== undefined) entry.detail = detail
    return { type: 'audit', entry }
  }

  /**
   * locked turns a change into a state method. The change runs alone under the mutex:
   * it checks, commits (memory changes at once) and returns a Deferred. The mutex is
   * released before the disk write finishes, so concurrent changes share one fsync;
   * the caller gets the result (and events fire) only once the write is durable.
   */
  const locked = <A extends unknown[], R>(fn: (...a: A) => Deferred<R>) => async (...a: A): Promise<R> => {
    const deferred = await mutex.runExclusive(() => {
      try {
        return fn(...a)
      } catch (e) {
        auditSeq = store.meta.auditSeq
        throw e
      }
    })
    await deferred.durable
    return deferred.done()
  }
  const unchanged = <R>(value: R): Deferred<R> => ({ durable: Promise.resolve(), done: () => value })
  const written = <R>(ops: StoreOp[], done: () => R): Deferred<R> => ({ durable: store.commit(ops), done })

  /** saveNode commits a node change with its audit entry and re-indexes; done() emits. */
  function saveNode (next: NodeRecord, extra: StoreOp[]): Deferred<Node> {
    const prevRecord = store.nodes.get(next.id)
    const previous = prevRecord === undefined ? undefined : view(prevRecord)
    const durable = store.commit([{ type: 'put', table: 'node', value: next }, ...extra])
    if (prevRecord !== undefined) unindex(prevRecord)
    index(next)
    dirtyNodes.delete(next.id)
    if (isExpired(next)) seenExpired.add(next.id)
    else seenExpired.delete(next.id)
    return {
      durable,
      done: () => {
        const node = view(next)
        emit('node-upserted', node, previous)
        return node
      }
    }
  }

  function updateRuntime (id: string, change: () => boolean): void {
    const rec = store.nodes.get(id)
    if (rec === undefined) return
    const previous = view(rec)
    if (change()) emit('node-upserted', view(rec), previous)
  }

  function registerLocked (req: RegisterRequest): Deferred<Node> {
    const existing = findByMachineKey(req.machineKey)
    const wgOwner = byWgKey.get(req.wgKey)
    if (wgOwner !== undefined && wgOwner !== existing?.id) {
      throw new WarrenError('wg_key_in_use', 'this WireGuard key is already registered by another node; generate a fresh key for this machine', { status: 409, field: 'wgKey' })
    }
    if (req.authKey === undefined) {
      if (existing === undefined) {
        throw new WarrenError('not_registered', 'this machine is not registered with the controller; join with an auth key (warren up --auth-key ...)', { status: 401 })
      }
      if (isExpired(existing)) {
        throw new WarrenError('node_key_expired', `the key of node '${existing.name}' has expired; log in again with a new auth key`, { status: 401 })
      }
      if (existing.wgKey === req.wgKey) return unchanged(view(existing))
      return saveNode({ ...existing, wgKey: req.wgKey }, [auditOp(`node:${existing.id}`, 'node.rekey', existing.name)])
    }

    const key = checkAuthKey(req.authKey)
    const requested = [...new Set(req.requestTags ?? [])].sort()
    for (const tag of requested) {
      if (!key.tags.includes(tag) && !state.tagOwnersAllow(key.user, tag)) {
        throw new WarrenError('tag_not_allowed', `this auth key does not grant '${tag}'${key.tags.length > 0 ? ` (it grants ${key.tags.join(', ')})` : ''}, and no tagOwners entry lets ${key.user ?? 'its user'} use it`, { status: 403, field: 'requestTags' })
      }
    }
    const tags = requested.length > 0 ? requested : [...key.tags].sort()
    const keyExpiry = nodeKeyExpiryMs > 0 ? iso(now() + nodeKeyExpiryMs) : undefined
    const ops: StoreOp[] = [{ type: 'put', table: 'authkey', value: { ...key, used: true } }]
    let next: NodeRecord
    if (existing !== undefined) {
      next = { ...existing, wgKey: req.wgKey, tags, ephemeral: key.ephemeral, approved: existing.approved || key.preapproved, authKeyId: key.id }
      if (tags.length > 0) delete next.user
      else next.user = key.user
      if (key.user !== undefined) next.createdBy = key.user
      if (keyExpiry !== undefined) next.keyExpiry = keyExpiry
      else delete next.keyExpiry
    } else {
      const { offset, ipv4 } = nextIPv4(store.meta.ipamLast)
      ops.push({ type: 'meta', name: 'ipamLast', value: offset })
      next = {
        id: randomBytes(8).toString('hex'),
        name: uniqueNodeName(req.hostname, n => byName.has(n)),
        tags,
        machineKey: req.machineKey,
        wgKey: req.wgKey,
        ipv4,
        ipv6: meshIPv6(store.meta.ulaPrefix, ipv4),
        ipOffset: offset,
        approved: key.preapproved,
        ephemeral: key.ephemeral,
        created: iso(),
        authKeyId: key.id
      }
      if (tags.length === 0 && key.user !== undefined) next.user = key.user
      if (key.user !== undefined) next.createdBy = key.user
      if (keyExpiry !== undefined) next.keyExpiry = keyExpiry
    }
    ops.push(auditOp(`authkey:${key.id}`, existing === undefined ? 'node.register' : 'node.reauth', next.name,
      { node: next.id, ipv4: next.ipv4, ...(tags.length > 0 ? { tags } : { user: next.user }) }))
    return saveNode(next, ops)
  }

  const registerExclusive = locked(registerLocked)

  function findByMachineKey (machineKey: string): NodeRecord | undefined {
    const id = byMachineKey.get(machineKey)
    return id === undefined ? undefined : store.nodes.get(id)
  }

  function checkAuthKey (key: string): AuthKeyRecord {
    let parsed
    try {
      parsed = parseCredential(key, 'auth')
    } catch (e) {
      throw new WarrenError('invalid_auth_key', (e as Error).message, { status: 401, field: 'authKey' })
    }
    const rec = store.authKeys.get(parsed.id)
    if (rec === undefined || !sameHash(rec.secretHash, hashSecret(parsed.secret))) {
      throw new WarrenError('invalid_auth_key', 'this auth key is not known to the controller; check that it was copied whole, or create one with \'warren admin keys create\'', { status: 401, field: 'authKey' })
    }
    if (rec.revoked) {
      throw new WarrenError('auth_key_revoked', `auth key ${rec.id} was revoked by an admin; ask for a new one`, { status: 401, field: 'authKey' })
    }
    if (Date.parse(rec.expires) <= now()) {
      throw new WarrenError('auth_key_expired', `auth key ${rec.id} expired at ${rec.expires}; ask for a new one`, { status: 401, field: 'authKey' })
    }
    if (rec.used && !rec.reusable) {
      throw new WarrenError('auth_key_used', `auth key ${rec.id} is single-use and has already registered a node; create a new key, or a --reusable one`, { status: 401, field: 'authKey' })
    }
    if (rec.user !== undefined && !store.users.has(userIdByName(rec.user) ?? '')) {
      throw new WarrenError('invalid_auth_key', `auth key ${rec.id} belongs to user '${rec.user}', who no longer exists`, { status: 401, field: 'authKey' })
    }
    return rec
  }

  function userIdByName (name: string): string | undefined {
    return userByName.get(name)
  }
  function requireUser (name: string, field?: string): UserRecord {
    const id = userIdByName(name)
    if (id === undefined) {
      throw new WarrenError('user_not_found', `user '${name}' does not exist; create it with 'warren admin users create ${name}'`, { status: 404, ...(field !== undefined ? { field } : {}) })
    }
    return store.users.get(id)!
  }

  function expiryFrom (duration: string, field: string): string {
    const ms = parseDuration(duration, field)
    if (ms <= 0) throw new WarrenError('bad_duration', `${field} must be longer than 0 (for example 90d)`, { field })
    if (ms > 100 * 365 * 86_400_000) throw new WarrenError('bad_duration', `${field} must be at most 100 years`, { field })
    return iso(now() + ms)
  }


  const state: ControllerState = {
    domain,
    controllerKey: store.controllerKey,
    ulaPrefix: store.meta.ulaPrefix,
    events,
    store,
    tagOwnersAllow: () => false,

    listNodes: () => [...store.nodes.values()].map(view),
    getNode (idOrName) {
      const n = findRecord(idOrName)
      return n === undefined ? undefined : view(n)
    },
    nodeByMachineKey (machineKey) {
      const n = findByMachineKey(machineKey)
      return n === undefined ? undefined : view(n)
    },
    nodeRecord: id => store.nodes.get(id),
    setOnline (id, isOnline) {
      updateRuntime(id, () => {
        const rec = store.nodes.get(id)!
        rec.lastSeen = iso()
        dirtyNodes.add(id)
        if (online.has(id) === isOnline) return false
        if (isOnline) online.add(id)
        else online.delete(id)
        return true
      })
    },
    touchLastSeen (id) {
      const rec = store.nodes.get(id)
      if (rec === undefined) return
      rec.lastSeen = iso()
      dirtyNodes.add(id)
    },
    setEndpoints (id, eps) {
      updateRuntime(id, () => {
        const before = endpoints.get(id) ?? []
        if (before.length === eps.length && before.every((e, i) => e === eps[i])) return false
        endpoints.set(id, [...eps])
        return true
      })
    },
    recordPresence (id, presence) {
      const rec = store.nodes.get(id)
      if (rec === undefined) return
      if (presence.online === true) online.add(id)
      else if (presence.online === false) online.delete(id)
      if (presence.endpoints !== undefined) endpoints.set(id, [...presence.endpoints])
      if (presence.lastSeen !== undefined) {
        rec.lastSeen = presence.lastSeen
        dirtyNodes.add(id)
      }
    },

    async register (req) {
      checkProtocolVersion(req.version, 'this node')
      const skew = req.timestamp - now()
      if (Math.abs(skew) > maxClockSkewMs) {
        throw new WarrenError('clock_skew', `the registration's timestamp is ${Math.round(skew / 1000)} s off the controller's clock (at most ${maxClockSkewMs / 1000} s allowed); fix the node's clock (NTP) and retry`, { status: 401, field: 'timestamp' })
      }
      const { signature, wgProof, ...signed } = req
      const payload = registerSigningPayload(signed)
      if (!verifyMachineSignature(req.machineKey, REGISTER_DOMAIN, payload, signature)) {
        throw new WarrenError('bad_signature', 'the registration is not signed by the machine key it names', { status: 401, field: 'signature' })
      }
      if (!isWireGuardKey(req.wgKey) || !verifyWireGuardProof(req.wgKey, REGISTER_DOMAIN, payload, wgProof)) {
        throw new WarrenError('bad_wg_proof', 'the WireGuard key proof does not match this controller\'s key (GET /v1/machine/key); the node must prove it holds its WireGuard private key', { status: 401, field: 'wgProof' })
      }
      return await registerExclusive(req)
    },

    approveNode: locked((idOrName, actor) => {
      const n = requireRecord(idOrName)
      if (n.approved) return unchanged(view(n))
      return saveNode({ ...n, approved: true }, [auditOp(actor, 'node.approve', n.name, { node: n.id })])
    }),
    renameNode: locked((idOrName, name, actor) => {
      checkNodeName(name)
      const n = requireRecord(idOrName)
      if (n.name === name) return unchanged(view(n))
      const holder = byName.get(name)
      if (holder !== undefined) {
        throw new WarrenError('name_taken', `another node (${holder}) is already named '${name}'; pick another name or rename that node first`, { status: 409, field: 'name' })
      }
      return saveNode({ ...n, name }, [auditOp(actor, 'node.rename', name, { node: n.id, from: n.name })])
    }),
    expireNode: locked((idOrName, actor) => {
      const n = requireRecord(idOrName)
      if (isExpired(n)) return unchanged(view(n))
      return saveNode({ ...n, keyExpiry: iso() }, [auditOp(actor, 'node.expire', n.name, { node: n.id })])
    }),
    setTags: locked((idOrName, tagList, actor) => {
      const n = requireRecord(idOrName)
      const tags = [...new Set(tagList)].sort()
      const next: NodeRecord = { ...n, tags }
      if (tags.length > 0) {
        delete next.user
      } else if (n.user === undefined) {
        if (n.createdBy === undefined || userIdByName(n.createdBy) === undefined) {
          throw new WarrenError('needs_owner', `node '${n.name}' has no user to own it once its tags are removed; keep at least one tag`, { status: 400, field: 'tags' })
        }
        next.user = n.createdBy
      }
      return saveNode(next, [auditOp(actor, 'node.tags', n.name, { node: n.id, tags, before: n.tags })])
    }),
    deleteNode: locked((idOrName, actor) => {
      const n = requireRecord(idOrName)
      const node = view(n)
      const durable = store.commit([{ type: 'del', table: 'node', id: n.id }, auditOp(actor, 'node.delete', n.name, { node: n.id, ipv4: n.ipv4 })])
      unindex(n)
      online.delete(n.id)
      endpoints.delete(n.id)
      dirtyNodes.delete(n.id)
      seenExpired.delete(n.id)
      return { durable, done: () => { emit('node-removed', node); return node } }
    }),
    sweepExpired () {
      for (const n of store.nodes.values()) {
        if (!seenExpired.has(n.id) && isExpired(n)) {
          seenExpired.add(n.id)
          const node = view(n)
          emit('node-upserted', node, { ...node, status: n.approved ? 'active' : 'pending' })
        }
      }
    },

    listUsers: () => [...store.users.values()].map(userView),
    getUser (name) {
      const id = userIdByName(name)
      return id === undefined ? undefined : userView(store.users.get(id)!)
    },
    createUser: locked((req, actor) => {
      if (userIdByName(req.name) !== undefined) {
        throw new WarrenError('user_exists', `user '${req.name}' already exists`, { status: 409, field: 'name' })
      }
      if (req.email !== undefined) {
        const email = req.email.toLowerCase()
        const holder = [...store.users.values()].find(u => u.email?.toLowerCase() === email)
        if (holder !== undefined) throw new WarrenError('email_taken', `user '${holder.name}' already has the email ${req.email}`, { status: 409, field: 'email' })
      }
      const rec: UserRecord = { id: randomBytes(6).toString('hex'), name: req.name, created: iso() }
      if (req.email !== undefined) rec.email = req.email
      const durable = store.commit([{ type: 'put', table: 'user', value: rec }, auditOp(actor, 'user.create', rec.name, req.email !== undefined ? { email: req.email } : undefined)])
      userByName.set(rec.name, rec.id)
      const user = userView(rec)
      return { durable, done: () => { emit('user-upserted', user); return user } }
    }),
    deleteUser: locked((name, actor) => {
      const u = requireUser(name)
      const owned = [...store.nodes.values()].filter(n => n.user === name)
      if (owned.length > 0) {
        const list = owned.slice(0, 5).map(n => n.name).join(', ') + (owned.length > 5 ? ', ...' : '')
        throw new WarrenError('user_has_nodes', `user '${name}' still owns ${owned.length} node(s) (${list}); delete or re-tag them first ('warren admin nodes delete NODE')`, { status: 409 })
      }
      // The user's keys die with the user, so that no node can join as someone who is gone.
      const keyOps: StoreOp[] = [...store.authKeys.values()]
        .filter(k => k.user === name && !k.revoked)
        .map(k => ({ type: 'put', table: 'authkey', value: { ...k, revoked: true } }))
      const durable = store.commit([{ type: 'del', table: 'user', id: u.id }, ...keyOps, auditOp(actor, 'user.delete', name, keyOps.length > 0 ? { revokedAuthKeys: keyOps.length } : undefined)])
      userByName.delete(name)
      const user = userView(u)
      return { durable, done: () => { emit('user-removed', user); return user } }
    }),

    listAuthKeys: () => [...store.authKeys.values()].map(authKeyView),
    createAuthKey: locked((req, actor) => {
      const tags = [...new Set(req.tags ?? [])].sort()
      if (req.user === undefined && tags.length === 0) {
        throw new WarrenError('missing_owner', 'an auth key needs a user (--user U) or tags (--tags tag:x) to say who its nodes belong to', { field: 'user' })
      }
      if (req.user !== undefined) requireUser(req.user, 'user')
      const expires = expiryFrom(req.expiry ?? DEFAULT_AUTH_KEY_EXPIRY, 'expiry')
      const cred = newCredential('auth', opts.fingerprint)
      const rec: AuthKeyRecord = {
        id: cred.id,
        reusable: req.reusable ?? false,
        ephemeral: req.ephemeral ?? false,
        preapproved: req.preapproved ?? false,
        tags,
        created: iso(),
        expires,
        used: false,
        revoked: false,
        secretHash: cred.secretHash
      }
      if (req.user !== undefined) rec.user = req.user
      const detail = { reusable: rec.reusable, ephemeral: rec.ephemeral, preapproved: rec.preapproved, tags, expires, ...(rec.user !== undefined ? { user: rec.user } : {}) }
      return written([{ type: 'put', table: 'authkey', value: rec }, auditOp(actor, 'authkey.create', rec.id, detail)], () => ({ key: cred.key, authKey: authKeyView(rec) }))
    }),
    expireAuthKey: locked((id, actor) => {
      const k = store.authKeys.get(id)
      if (k === undefined) throw new WarrenError('auth_key_not_found', `no auth key with id '${id}'; 'warren admin keys list' shows them`, { status: 404 })
      if (k.revoked) return unchanged(authKeyView(k))
      const next = { ...k, revoked: true }
      return written([{ type: 'put', table: 'authkey', value: next }, auditOp(actor, 'authkey.expire', id)], () => authKeyView(next))
    }),

    listApiKeys: () => [...store.apiKeys.values()].map(apiKeyView),
    createApiKey: locked((req, actor) => {
      const expires = expiryFrom(req.expiry ?? DEFAULT_API_KEY_EXPIRY, 'expiry')
      const cred = newCredential('api', opts.fingerprint)
      const rec: ApiKeyRecord = { id: cred.id, created: iso(), expires, revoked: false, secretHash: cred.secretHash }
      if (req.description !== undefined) rec.description = req.description
      return written([{ type: 'put', table: 'apikey', value: rec }, auditOp(actor, 'apikey.create', rec.id, { expires })], () => ({ key: cred.key, apiKey: apiKeyView(rec) }))
    }),
    expireApiKey: locked((id, actor) => {
      const k = store.apiKeys.get(id)
      if (k === undefined) throw new WarrenError('api_key_not_found', `no API key with id '${id}'; 'warren admin apikeys list' shows them`, { status: 404 })
      if (k.revoked) return unchanged(apiKeyView(k))
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
      if (rec === undefined || !sameHash(rec.secretHash, hashSecret(parsed.secret))) {
        throw new WarrenError('invalid_api_key', 'this API key is not known to the controller; create one with \'warren admin apikeys create\' on the controller host', { status: 401 })
      }
      if (rec.revoked) throw new WarrenError('api_key_revoked', `API key ${rec.id} was revoked; create a new one`, { status: 401 })
      if (Date.parse(rec.expires) <= now()) throw new WarrenError('api_key_expired', `API key ${rec.id} expired at ${rec.expires}; create a new one`, { status: 401 })
      rec.lastUsed = iso()
      dirtyApiKeys.add(rec.id)
      return apiKeyView(rec)
    },

    listAudit ({ limit = 100, after } = {}) {
      const all = store.audit
      if (after === undefined) return all.slice(Math.max(0, all.length - limit))
      // Entries are in seq order: find the first one past `after` by binary search.
      let lo = 0
      let hi = all.length
      while (lo < hi) {
        const mid = (lo + hi) >> 1
        if (all[mid]!.seq <= after) lo = mid + 1
        else hi = mid
      }
      return all.slice(lo, lo + limit)
    },
    commit: locked((ops, actor, action, target, detail) => written([...ops, auditOp(actor, action, target, detail)], () => undefined)),
    flush: locked(() => {
      const ops: StoreOp[] = []
      for (const id of dirtyNodes) {
        const n = store.nodes.get(id)
        if (n !== undefined) ops.push({ type: 'put', table: 'node', value: n })
      }
      for (const id of dirtyApiKeys) {
        const k = store.apiKeys.get(id)
        if (k !== undefined) ops.push({ type: 'put', table: 'apikey', value: k })
      }
      dirtyNodes.clear()
      dirtyApiKeys.clear()
      return { durable: store.commit(ops, { durable: false }), done: () => undefined }
    }),
    async close () {
      clearInterval(flushTimer)
      await state.flush().catch(() => {})
    }
  }
  return state
}

function sameHash (a: string, b: string): boolean {
  const x = Buffer.from(a, 'hex')
  const y = Buffer.from(b, 'hex')
  return x.length === y.length && timingSafeEqual(x, y)
}
