import { mkdir, readFile, writeFile, rename, chmod, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { Level } from 'level'
import {
  WarrenError, generateWireGuardKeyPair, wireGuardPublicKey,
  type AuthKeyInfo, type ApiKeyInfo, type AuditEntry, type PostureAttrs, type UserRole, type WireGuardKeyPair
} from '@warren/protocol'
import { randomUlaPrefix } from './ipam.js'

/**
 * Store is the controller's durable state: LevelDB in `<stateDir>/db`, read whole into
 * memory at start and written through. `commit` changes the in-memory copy at once and
 * resolves after LevelDB has synced the batch to disk, so what the API acknowledged
 * survives a kill -9. Commits that arrive while a write is in flight go to disk together
 * in the next batch (group commit): one fsync for many registrations. If a write fails,
 * memory is ahead of disk, so the store refuses every later commit until a restart.
 *
 * Keys: `user!<id>`, `node!<id>`, `authkey!<id>`, `apikey!<id>`, `audit!<seq, 12 digits>`,
 * `meta!<name>`. Other modules keep their own records under their own prefix (for
 * example `policy!`) with `raw` ops and `readPrefix`.
 */
export interface Store {
  readonly users: ReadonlyMap<string, UserRecord>
  readonly nodes: ReadonlyMap<string, NodeRecord>
  readonly authKeys: ReadonlyMap<string, AuthKeyRecord>
  readonly apiKeys: ReadonlyMap<string, ApiKeyRecord>
  /** audit entries in sequence order */
  readonly audit: readonly AuditEntry[]
  readonly meta: Readonly<StoreMeta>
  /** controller's X25519 key (from `<stateDir>/controller.key`, 0600) */
  readonly controllerKey: WireGuardKeyPair
  /**
   * commit applies ops to memory now (synchronously, or throws and applies nothing) and
   * returns a promise that resolves once they are on disk; durable (fsync) unless
   * `durable: false`
   */
  commit: (ops: StoreOp[], opts?: { durable?: boolean }) => Promise<void>
  /** readPrefix reads records written with raw ops, in key order */
  readPrefix: (prefix: string) => Promise<Array<[string, unknown]>>
  close: () => Promise<void>
}

/**
 * UserRecord is a person. `idp` ties a user who logged in at the identity provider to
 * its stable subject (issuer + sub); an admin-made user gets it at its first login.
 */
/** `role` is absent for users stored before roles existed: they are members. */
export interface UserRecord { id: string, name: string, email?: string, displayName?: string, created: string, idp?: IdpLink, role?: UserRole }

/** IdpLink is what the identity provider last said about a user. */
export interface IdpLink {
  issuer: string
  subject: string
  /** the groups claim at the last login (empty when the provider sends none) */
  groups: string[]
  lastLogin: string
}

/** NodeRecord is a node as stored; status, fqdn, online and endpoints are derived at read time. */
export interface NodeRecord {
  id: string
  name: string
  user?: string
  tags: string[]
  machineKey: string
  wgKey: string
  ipv4: string
  ipv6: string
  /** offset of ipv4 in 100.64.0.0/10, as the IPAM counter gave it */
  ipOffset: number
  /** false while the node waits for an admin's approval */
  approved: boolean
  ephemeral: boolean
  created: string
  lastSeen?: string
  keyExpiry?: string
  /** auth key that last (re-)registered this node */
  authKeyId?: string
  /** user whose key created the node (kept for tagged nodes, which have no owner) */
  createdBy?: string
  /** subnet routes the node advertises, and those approved for it (canonical, sorted) */
  advertisedRoutes?: string[]
  approvedRoutes?: string[]
  /** posture attributes: `node:` ones as the node last reported them, `custom:` ones as admins set them */
  postureAttrs?: PostureAttrs
}

export interface AuthKeyRecord extends AuthKeyInfo { secretHash: string }
/** ApiKeyRecord is an API key as stored; `parentId` is the API key it was created with, if any. */
export interface ApiKeyRecord extends ApiKeyInfo { secretHash: string, parentId?: string }

export interface StoreMeta {
  /** last IPv4 offset handed out; only grows */
  ipamLast: number
  ulaPrefix: string
  auditSeq: number
}

interface Tables { user: UserRecord, node: NodeRecord, authkey: AuthKeyRecord, apikey: ApiKeyRecord }
export type TableName = keyof Tables

export type StoreOp =
  | { [K in TableName]: { type: 'put', table: K, value: Tables[K] } }[TableName]
  | { type: 'del', table: TableName, id: string }
  | { type: 'audit', entry: AuditEntry }
  | { type: 'meta', name: 'ipamLast', value: number }
  | { type: 'raw-put', key: string, value: unknown }
  | { type: 'raw-del', key: string }

const RESERVED = ['user!', 'node!', 'authkey!', 'apikey!', 'audit!', 'meta!']

export const DB_DIR = 'db'
export const CONTROLLER_KEY_FILE = 'controller.key'

/** openStore opens (or creates) the store in stateDir and loads it into memory. */
export async function openStore (stateDir: string): Promise<Store> {
  await mkdir(stateDir, { recursive: true, mode: 0o700 })
  await chmod(stateDir, 0o700)
  const controllerKey = await loadOrCreateControllerKey(join(stateDir, CONTROLLER_KEY_FILE))
  const dbDir = join(stateDir, DB_DIR)
  await mkdir(dbDir, { recursive: true, mode: 0o700 })
  const db = new Level<string, unknown>(dbDir, { valueEncoding: 'json' })
  try {
    await db.open()
  } catch (e) {
    const cause = (e as { cause?: { code?: string } }).cause
    if ((e as { code?: string }).code === 'LEVEL_LOCKED' || cause?.code === 'LEVEL_LOCKED') {
      throw new WarrenError('state_dir_locked', `state dir ${stateDir} is in use by another controller; stop it first or use another --state-dir`, { cause: e })
    }
    throw new WarrenError('store_open_failed', `cannot open the controller database in ${dbDir}: ${(e as Error).message}`, { cause: e })
  }
  await makePrivate(dbDir)

  const tables: { [K in TableName]: Map<string, Tables[K]> } = {
    user: new Map(), node: new Map(), authkey: new Map(), apikey: new Map()
  }
  const audit: AuditEntry[] = []
  const meta: StoreMeta = { ipamLast: 0, ulaPrefix: '', auditSeq: 0 }
  for await (const [key, value] of db.iterator()) {
    const bang = key.indexOf('!')
    const prefix = key.slice(0, bang)
    const rest = key.slice(bang + 1)
    if (prefix in tables) (tables[prefix as TableName] as Map<string, unknown>).set(rest, value)
    else if (prefix === 'audit') audit.push(value as AuditEntry)
    else if (prefix === 'meta' && rest === 'ipamLast') meta.ipamLast = value as number
    else if (prefix === 'meta' && rest === 'ulaPrefix') meta.ulaPrefix = value as string
  }
  meta.auditSeq = audit.length === 0 ? 0 : audit[audit.length - 1]!.seq
  if (meta.ulaPrefix === '') {
    meta.ulaPrefix = randomUlaPrefix()
    await db.put('meta!ulaPrefix', meta.ulaPrefix, { sync: true })
  }

  let closed = false
  let failed: Error | undefined
  interface Queued { ops: LevelOp[], durable: boolean, resolve: () => void, reject: (e: Error) => void }
  let queue: Queued[] = []
  let writing: Promise<void> | undefined

  /** writeQueued writes everything queued so far as one batch, until the queue is empty. */
  async function writeQueued (): Promise<void> {
    while (queue.length > 0) {
      const group = queue
      queue = []
      try {
        await db.batch(group.flatMap(q => q.ops), { sync: group.some(q => q.durable) })
        for (const q of group) q.resolve()
      } catch (e) {
        failed = new WarrenError('store_failed', `the controller could not write its database (${(e as Error).message}); restart it once the disk is fixed`, { status: 503, cause: e })
        for (const q of [...group, ...queue]) q.reject(failed)
        queue = []
      }
    }
    writing = undefined
  }

  function applyToMemory (ops: StoreOp[]): void {
    for (const op of ops) {
      switch (op.type) {
        case 'put': (tables[op.table] as Map<string, unknown>).set(op.value.id, op.value); break
        case 'del': tables[op.table].delete(op.id); break
        case 'audit': audit.push(op.entry); meta.auditSeq = Math.max(meta.auditSeq, op.entry.seq); break
        case 'meta': meta[op.name] = op.value; break
        default: break
      }
    }
  }

  const store: Store = {
    users: tables.user,
    nodes: tables.node,
    authKeys: tables.authkey,
    apiKeys: tables.apikey,
    audit,
    meta,
    controllerKey,
    commit (ops, opts = {}) {
      if (failed !== undefined) throw failed
      if (closed) throw new WarrenError('store_closed', 'the controller is shutting down; retry against the restarted controller', { status: 503 })
      if (ops.length === 0) return Promise.resolve()
      const batch = ops.map(toLevelOp)
      applyToMemory(ops)
      const done = new Promise<void>((resolve, reject) => { queue.push({ ops: batch, durable: opts.durable !== false, resolve, reject }) })
      writing ??= writeQueued()
      return done
    },
    async readPrefix (prefix) {
      const out: Array<[string, unknown]> = []
      for await (const entry of db.iterator({ gte: prefix, lt: `${prefix}\uffff` })) out.push(entry)
      return out
    },
    async close () {
      if (closed) return
      closed = true
      await writing
      await db.close()
      await makePrivate(dbDir)
    }
  }
  return store
}

type LevelOp = { type: 'put', key: string, value: unknown } | { type: 'del', key: string }

function toLevelOp (op: StoreOp): LevelOp {
  switch (op.type) {
    case 'put': return { type: 'put', key: `${op.table}!${op.value.id}`, value: op.value }
    case 'del': return { type: 'del', key: `${op.table}!${op.id}` }
    case 'audit': return { type: 'put', key: `audit!${String(op.entry.seq).padStart(12, '0')}`, value: op.entry }
    case 'meta': return { type: 'put', key: `meta!${op.name}`, value: op.value }
    case 'raw-put': checkRawKey(op.key); return { type: 'put', key: op.key, value: op.value }
    case 'raw-del': checkRawKey(op.key); return { type: 'del', key: op.key }
  }
}

function checkRawKey (key: string): void {
  if (!key.includes('!') || RESERVED.some(p => key.startsWith(p))) {
    throw new Error(`store: raw key '${key}' must be '<prefix>!<name>' outside the reserved prefixes`)
  }
}

/**
 * makePrivate sets the database tree to 0700 (dirs) and 0600 (files), whatever the umask
 * was when LevelDB made them: on every open, and again on close for files made while
 * running (which the 0700 directory already hides).
 */
async function makePrivate (dir: string): Promise<void> {
  await chmod(dir, 0o700)
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) await makePrivate(path)
    else if (entry.isFile()) await chmod(path, 0o600)
  }
}

/** loadOrCreateControllerKey reads the controller's WireGuard private key or makes one (0600). */
async function loadOrCreateControllerKey (path: string): Promise<WireGuardKeyPair> {
  try {
    const privateKey = (await readFile(path, 'utf8')).trim()
    return { privateKey, publicKey: wireGuardPublicKey(privateKey) }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new WarrenError('bad_controller_key', `cannot read the controller key ${path}: ${(e as Error).message}`, { cause: e })
    }
  }
  const kp = generateWireGuardKeyPair()
  await writeFile(`${path}.tmp`, `${kp.privateKey}\n`, { mode: 0o600 })
  await chmod(`${path}.tmp`, 0o600)
  await rename(`${path}.tmp`, path)
  return kp
}
