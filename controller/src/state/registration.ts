import { randomBytes } from 'node:crypto'
import {
  WarrenError, checkProtocolVersion, registerSigningPayload, isWireGuardKey, isCanonicalWireGuardKey, looksLikeNodeId,
  REGISTER_DOMAIN, type Node, type RegisterRequest
} from '@warren/protocol'
import type { NodeRecord, StoreOp, AuthKeyRecord } from '../store.js'
import { nextIPv4, meshIPv6 } from '../ipam.js'
import { uniqueNodeName } from '../names.js'
import { createWireGuardProofVerifier } from '../proof.js'
import { verifyMachineSignature } from '../map/verify.js'
import type { CommitCore } from './commit-core.js'
import type { NodeTable } from './node-table.js'
import type { AuthKeys } from './auth-keys.js'
import { createReplayGuard } from './replay-guard.js'

export interface RegistrationOptions {
  /** how long a node key stays valid after (re-)registration, ms; 0 = forever */
  nodeKeyExpiryMs: number
  /** how far a registration timestamp may be from our clock, ms */
  maxClockSkewMs: number
  tagOwnersAllow: (user: string | undefined, tag: string) => boolean
}

/** Registration is how nodes join: with an auth key, or through a login at the identity provider. */
export interface Registration {
  /** register joins a node with an auth key, or logs a known node in again with its machine key */
  register: (req: RegisterRequest) => Promise<Node>
  /**
   * checkLogin verifies a signed registration that starts a login (no auth key): its
   * timestamp, signatures and proof, once only. It changes nothing.
   */
  checkLogin: (req: RegisterRequest) => Promise<void>
  /**
   * registerLoggedIn joins the node of a checked login request as `user` (who just logged
   * in), or gives a known node to that user again: untagged, approved, with a fresh key expiry.
   */
  registerLoggedIn: (req: RegisterRequest, user: string) => Promise<Node>
}

/**
 * createRegistration gives the machine API's register: it checks the request's
 * timestamp, machine-key signature and WireGuard key proof, refuses a request it has
 * already accepted (a replay), then (in the commit core's queue) joins a new node with an auth key,
 * re-authenticates a known one, or rotates a known node's WireGuard key.
 */
export function createRegistration (core: CommitCore, table: NodeTable, authKeys: AuthKeys, opts: RegistrationOptions): Registration {
  const { store, auditOp } = core
  const verifyWireGuardProof = createWireGuardProofVerifier(store.controllerKey.privateKey, store.controllerKey.publicKey)
  const replays = createReplayGuard(opts.maxClockSkewMs, core.now)

  function authorise (req: RegisterRequest): { key: AuthKeyRecord, tags: string[] } {
    const key = authKeys.usableAuthKey(req.authKey!)
    const requested = [...new Set(req.requestTags ?? [])].sort()
    for (const tag of requested) {
      if (!key.tags.includes(tag) && !opts.tagOwnersAllow(key.user, tag)) {
        throw new WarrenError('tag_not_allowed', `this auth key does not grant '${tag}'${key.tags.length > 0 ? ` (it grants ${key.tags.join(', ')})` : ''}, and no tagOwners entry lets ${key.user ?? 'its user'} use it`, { status: 403, field: 'requestTags' })
      }
    }
    return { key, tags: requested.length > 0 ? requested : [...key.tags].sort() }
  }

  /** newNode makes the record of a node joining now, owned by `grant.user` unless it has tags. */
  function newNode (req: RegisterRequest, grant: { tags: string[], user?: string | undefined, approved: boolean, ephemeral: boolean, authKeyId?: string }, ops: StoreOp[]): NodeRecord {
    const { offset, ipv4 } = nextIPv4(store.meta.ipamLast)
    ops.push({ type: 'meta', name: 'ipamLast', value: offset })
    const next: NodeRecord = {
      id: randomBytes(8).toString('hex'),
      // A name that reads as a node id is skipped like a taken one (laptop -> laptop-1).
      name: uniqueNodeName(req.hostname, n => table.nameHolder(n) !== undefined || looksLikeNodeId(n)),
      tags: grant.tags,
      machineKey: req.machineKey,
      wgKey: req.wgKey,
      ipv4,
      ipv6: meshIPv6(store.meta.ulaPrefix, ipv4),
      ipOffset: offset,
      approved: grant.approved,
      ephemeral: grant.ephemeral,
      created: core.iso(),
      ...(grant.authKeyId !== undefined ? { authKeyId: grant.authKeyId } : {})
    }
    if (grant.tags.length === 0 && grant.user !== undefined) next.user = grant.user
    return next
  }

  /** setKeyExpiry starts a fresh key lifetime for a node that just authenticated. */
  function setKeyExpiry (next: NodeRecord): void {
    if (opts.nodeKeyExpiryMs > 0) next.keyExpiry = core.iso(core.now() + opts.nodeKeyExpiryMs)
    else delete next.keyExpiry
  }

  /** checkWgKey refuses a WireGuard key that another node uses. */
  function checkWgKey (req: RegisterRequest, existing: NodeRecord | undefined): void {
    const wgOwner = table.wgKeyHolder(req.wgKey)
    if (wgOwner !== undefined && wgOwner !== existing?.id) {
      throw new WarrenError('wg_key_in_use', 'this WireGuard key is already registered by another node; generate a fresh key for this machine', { status: 409, field: 'wgKey' })
    }
  }

  const registerLocked = core.locked((req: RegisterRequest, payload: string) => {
    if (replays.seen(payload)) {
      throw new WarrenError('registration_replayed', 'this signed registration was already used; the node must sign a new one (with a fresh timestamp)', { status: 409, field: 'signature' })
    }
    const existing = table.byMachineKey(req.machineKey)
    checkWgKey(req, existing)
    if (req.authKey === undefined) {
      if (existing === undefined) {
        throw new WarrenError('not_registered', 'this machine is not registered with the controller; join with an auth key (warren up --auth-key ...)', { status: 401 })
      }
      if (table.isExpired(existing)) {
        throw new WarrenError('node_key_expired', `the key of node '${existing.name}' has expired; log in again ('warren up', or with a new auth key)`, { status: 401 })
      }
      replays.remember(payload, req.timestamp)
      if (existing.wgKey === req.wgKey) return core.unchanged(table.view(existing))
      return table.save({ ...existing, wgKey: req.wgKey }, [auditOp(`node:${existing.id}`, 'node.rekey', existing.name)])
    }

    const { key, tags } = authorise(req)
    const ops: StoreOp[] = [{ type: 'put', table: 'authkey', value: { ...key, used: true } }]
    const next: NodeRecord = existing === undefined
      ? newNode(req, { tags, user: key.user, approved: key.preapproved, ephemeral: key.ephemeral, authKeyId: key.id }, ops)
      : { ...existing, wgKey: req.wgKey, tags, ephemeral: key.ephemeral, approved: existing.approved || key.preapproved, authKeyId: key.id }
    if (existing !== undefined) {
      if (tags.length > 0) delete next.user
      else next.user = key.user
    }
    if (key.user !== undefined) next.createdBy = key.user
    setKeyExpiry(next)
    ops.push(auditOp(`authkey:${key.id}`, existing === undefined ? 'node.register' : 'node.reauth', next.name,
      { node: next.id, ipv4: next.ipv4, ...(tags.length > 0 ? { tags } : { user: next.user }) }))
    replays.remember(payload, req.timestamp)
    return table.save(next, ops)
  })

  /** check verifies a signed registration without changing anything, and gives the payload it signed. */
  function check (req: RegisterRequest): string {
    checkProtocolVersion(req.version, 'this node')
    const skew = req.timestamp - core.now()
    if (Math.abs(skew) > opts.maxClockSkewMs) {
      throw new WarrenError('clock_skew', `the registration's timestamp is ${Math.round(skew / 1000)} s off the controller's clock (at most ${opts.maxClockSkewMs / 1000} s allowed); fix the node's clock (NTP) and retry`, { status: 401, field: 'timestamp' })
    }
    const { signature, wgProof, ...signed } = req
    const payload = registerSigningPayload(signed)
    if (!verifyMachineSignature(req.machineKey, REGISTER_DOMAIN, payload, signature)) {
      throw new WarrenError('bad_signature', 'the registration is not signed by the machine key it names', { status: 401, field: 'signature' })
    }
    if (isWireGuardKey(req.wgKey) && !isCanonicalWireGuardKey(req.wgKey)) {
      throw new WarrenError('bad_wg_key', 'the WireGuard public key is not in canonical form (bit 255 set, or not below 2^255-19); send the key exactly as `wg pubkey` prints it', { status: 400, field: 'wgKey' })
    }
    if (!isWireGuardKey(req.wgKey) || !verifyWireGuardProof(req.wgKey, REGISTER_DOMAIN, payload, wgProof)) {
      throw new WarrenError('bad_wg_proof', 'the WireGuard key proof does not match this controller\'s key (GET /v1/machine/key); the node must prove it holds its WireGuard private key', { status: 401, field: 'wgProof' })
    }
    return payload
  }

  const startLogin = core.locked((req: RegisterRequest, payload: string) => {
    if (replays.seen(payload)) {
      throw new WarrenError('registration_replayed', 'this signed login request was already used; the node must sign a new one (with a fresh timestamp)', { status: 409, field: 'signature' })
    }
    checkWgKey(req, table.byMachineKey(req.machineKey))
    replays.remember(payload, req.timestamp)
    return core.unchanged(undefined)
  })

  const registerLoggedIn = core.locked((req: RegisterRequest, user: string) => {
    const existing = table.byMachineKey(req.machineKey)
    checkWgKey(req, existing)
    const ops: StoreOp[] = []
    const next: NodeRecord = existing === undefined
      ? newNode(req, { tags: [], user, approved: true, ephemeral: false }, ops)
      : { ...existing, wgKey: req.wgKey, tags: [], user, ephemeral: false, approved: true }
    if (existing !== undefined) delete next.authKeyId
    next.createdBy = user
    setKeyExpiry(next)
    ops.push(auditOp(`user:${user}`, existing === undefined ? 'node.register' : 'node.reauth', next.name, { node: next.id, ipv4: next.ipv4, user, via: 'login' }))
    return table.save(next, ops)
  })

  return {
    register: async (req) => await registerLocked(req, check(req)),
    checkLogin: async (req) => {
      if (req.authKey !== undefined) throw new WarrenError('invalid_input', 'a login request carries no auth key: with an auth key, register instead (POST /v1/machine/register)', { status: 400, field: 'authKey' })
      await startLogin(req, check(req))
    },
    registerLoggedIn
  }
}
