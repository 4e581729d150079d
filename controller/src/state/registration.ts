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

/**
 * createRegistration gives the machine API's register: it checks the request's
 * timestamp, machine-key signature and WireGuard key proof, refuses a request it has
 * already accepted (a replay), then (in the commit core's queue) joins a new node with an auth key,
 * re-authenticates a known one, or rotates a known node's WireGuard key.
 */
export function createRegistration (core: CommitCore, table: NodeTable, authKeys: AuthKeys, opts: RegistrationOptions): (req: RegisterRequest) => Promise<Node> {
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

  function newNode (req: RegisterRequest, key: AuthKeyRecord, tags: string[], ops: StoreOp[]): NodeRecord {
    const { offset, ipv4 } = nextIPv4(store.meta.ipamLast)
    ops.push({ type: 'meta', name: 'ipamLast', value: offset })
    const next: NodeRecord = {
      id: randomBytes(8).toString('hex'),
      // A name that reads as a node id is skipped like a taken one (laptop -> laptop-1).
      name: uniqueNodeName(req.hostname, n => table.nameHolder(n) !== undefined || looksLikeNodeId(n)),
      tags,
      machineKey: req.machineKey,
      wgKey: req.wgKey,
      ipv4,
      ipv6: meshIPv6(store.meta.ulaPrefix, ipv4),
      ipOffset: offset,
      approved: key.preapproved,
      ephemeral: key.ephemeral,
      created: core.iso(),
      authKeyId: key.id
    }
    if (tags.length === 0 && key.user !== undefined) next.user = key.user
    return next
  }

  const registerLocked = core.locked((req: RegisterRequest, payload: string) => {
    if (replays.seen(payload)) {
      throw new WarrenError('registration_replayed', 'this signed registration was already used; the node must sign a new one (with a fresh timestamp)', { status: 409, field: 'signature' })
    }
    const existing = table.byMachineKey(req.machineKey)
    const wgOwner = table.wgKeyHolder(req.wgKey)
    if (wgOwner !== undefined && wgOwner !== existing?.id) {
      throw new WarrenError('wg_key_in_use', 'this WireGuard key is already registered by another node; generate a fresh key for this machine', { status: 409, field: 'wgKey' })
    }
    if (req.authKey === undefined) {
      if (existing === undefined) {
        throw new WarrenError('not_registered', 'this machine is not registered with the controller; join with an auth key (warren up --auth-key ...)', { status: 401 })
      }
      if (table.isExpired(existing)) {
        throw new WarrenError('node_key_expired', `the key of node '${existing.name}' has expired; log in again with a new auth key`, { status: 401 })
      }
      replays.remember(payload, req.timestamp)
      if (existing.wgKey === req.wgKey) return core.unchanged(table.view(existing))
      return table.save({ ...existing, wgKey: req.wgKey }, [auditOp(`node:${existing.id}`, 'node.rekey', existing.name)])
    }

    const { key, tags } = authorise(req)
    const ops: StoreOp[] = [{ type: 'put', table: 'authkey', value: { ...key, used: true } }]
    const next: NodeRecord = existing === undefined
      ? newNode(req, key, tags, ops)
      : { ...existing, wgKey: req.wgKey, tags, ephemeral: key.ephemeral, approved: existing.approved || key.preapproved, authKeyId: key.id }
    if (existing !== undefined) {
      if (tags.length > 0) delete next.user
      else next.user = key.user
    }
    if (key.user !== undefined) next.createdBy = key.user
    if (opts.nodeKeyExpiryMs > 0) next.keyExpiry = core.iso(core.now() + opts.nodeKeyExpiryMs)
    else delete next.keyExpiry
    ops.push(auditOp(`authkey:${key.id}`, existing === undefined ? 'node.register' : 'node.reauth', next.name,
      { node: next.id, ipv4: next.ipv4, ...(tags.length > 0 ? { tags } : { user: next.user }) }))
    replays.remember(payload, req.timestamp)
    return table.save(next, ops)
  })

  return async (req) => {
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
    return await registerLocked(req, payload)
  }
}
