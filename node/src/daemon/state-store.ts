import { promises as fs } from 'node:fs'
import { join } from 'node:path'
import {
  Netmap, Node, WarrenError, generateMachineKeyPair, generateWireGuardKeyPair, validate, wireGuardPublicKey, fromBase64,
  type MachineKeyPair, type WireGuardKeyPair, type RoutingPrefs
} from '@warren/protocol'

/** NodeKeys are the node's two identities, kept in the state dir for its whole life. */
export interface NodeKeys {
  wireguard: WireGuardKeyPair
  machine: MachineKeyPair
}

/** SavedLogin is what `up` learned: where the controller is and who we are there. */
export interface SavedLogin {
  controller: string
  fingerprint?: string
  hostname: string
  advertiseTags: string[]
  /** route settings of the last `up` (absent in logins saved before routes existed) */
  routing?: RoutingPrefs
  node: Node
  /** false after `down`: a restarted daemon then stays down until the next `up` */
  wantRunning: boolean
}

/** SavedMap is the last network map with its session position, for restart and resume. */
export interface SavedMap {
  session: string
  seq: number
  netmap: Netmap
}

function parseLogin (v: unknown): SavedLogin {
  const o = v as Partial<SavedLogin> | null
  if (o === null || typeof o !== 'object' || typeof o.controller !== 'string' || typeof o.hostname !== 'string' ||
    !Array.isArray(o.advertiseTags) || typeof o.wantRunning !== 'boolean' || (o.fingerprint !== undefined && typeof o.fingerprint !== 'string')) {
    throw new Error('fields are missing or of the wrong type')
  }
  return { ...o, node: validate(Node, o.node, 'saved node') } as SavedLogin
}

function parseMap (v: unknown): SavedMap {
  const o = v as Partial<SavedMap> | null
  if (o === null || typeof o !== 'object' || typeof o.session !== 'string' || !Number.isInteger(o.seq)) throw new Error('session or seq is missing')
  return { session: o.session, seq: o.seq!, netmap: validate(Netmap, o.netmap, 'saved netmap') }
}

/**
 * StateStore is the daemon's state dir: two key files (0600), the login and the last map
 * (0600), in a directory only root can enter (0700). Writes go to a temporary file that is
 * renamed over the old one, so a crash leaves either the old or the new content.
 */
export interface StateStore {
  readonly dir: string
  /** keys loads the key pair files, creating them once on first use */
  keys(): Promise<NodeKeys>
  readLogin(): Promise<SavedLogin | undefined>
  writeLogin(l: SavedLogin): Promise<void>
  readMap(): Promise<SavedMap | undefined>
  writeMap(m: SavedMap): Promise<void>
  clearMap(): Promise<void>
}

const FILES = { wireguard: 'wireguard.key', machine: 'machine.key', login: 'login.json', map: 'netmap.json' }

/** openStateStore creates the state dir (0700) if needed and returns its store. */
export async function openStateStore (dir: string): Promise<StateStore> {
  await fs.mkdir(dir, { recursive: true, mode: 0o700 })
  await fs.chmod(dir, 0o700)
  let cachedKeys: Promise<NodeKeys> | undefined

  async function writeFileAtomic (name: string, text: string): Promise<void> {
    const target = join(dir, name)
    const tmp = `${target}.tmp-${process.pid}`
    const fh = await fs.open(tmp, 'w', 0o600)
    try {
      await fh.writeFile(text)
      await fh.sync()
    } finally { await fh.close() }
    await fs.rename(tmp, target)
  }

  async function readText (name: string): Promise<string | undefined> {
    try { return await fs.readFile(join(dir, name), 'utf8') } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw e
    }
  }

  async function readJson<T> (name: string, parse: (v: unknown) => T): Promise<T | undefined> {
    const text = await readText(name)
    if (text === undefined) return undefined
    try { return parse(JSON.parse(text)) } catch (e) {
      throw new WarrenError('bad_state', `state file ${join(dir, name)} is damaged (${(e as Error).message}); remove it and run 'warren up' again`, { status: 500 })
    }
  }

  async function loadKey (name: string, make: () => string, check: (s: string) => boolean): Promise<string> {
    const text = (await readText(name))?.trim()
    if (text !== undefined) {
      if (!check(text)) throw new WarrenError('bad_state', `key file ${join(dir, name)} is damaged; restore it from a backup (removing it gives this node a new identity)`, { status: 500 })
      await fs.chmod(join(dir, name), 0o600)
      return text
    }
    const key = make()
    await writeFileAtomic(name, `${key}\n`)
    return key
  }

  async function loadKeys (): Promise<NodeKeys> {
    const wgPriv = await loadKey(FILES.wireguard, () => generateWireGuardKeyPair().privateKey, s => fromBase64(s, 32) !== null)
    const mSecret = await loadKey(FILES.machine, () => generateMachineKeyPair().secretKey, s => fromBase64(s, 64) !== null)
    return {
      wireguard: { privateKey: wgPriv, publicKey: wireGuardPublicKey(wgPriv) },
      // The Ed25519 secret key (tweetnacl form) ends with the public key.
      machine: { secretKey: mSecret, publicKey: Buffer.from(fromBase64(mSecret, 64)!.subarray(32)).toString('base64') }
    }
  }

  return {
    dir,
    keys () {
      cachedKeys ??= loadKeys()
      cachedKeys.catch(() => { cachedKeys = undefined })
      return cachedKeys
    },
    readLogin: async () => await readJson(FILES.login, parseLogin),
    writeLogin: async l => { await writeFileAtomic(FILES.login, JSON.stringify(l)) },
    readMap: async () => await readJson(FILES.map, parseMap),
    writeMap: async m => { await writeFileAtomic(FILES.map, JSON.stringify(m)) },
    clearMap: async () => { await fs.rm(join(dir, FILES.map), { force: true }) }
  }
}
