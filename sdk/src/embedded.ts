import { randomBytes } from 'node:crypto'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { WarrenError, type LocalStatus, type LocalUpRequest } from '@warren/protocol'
import { connect, type Warren, type MeshPeer } from './mesh.js'

/** CreateNodeOptions say how an app's own node joins. */
export interface CreateNodeOptions {
  /** the controller's URL */
  controller: string
  /** an auth key; for `ephemeral`, an ephemeral one ('warren admin keys create --ephemeral') */
  authKey: string
  /** where the node keeps its keys and last map (0700); one node per directory */
  stateDir: string
  hostname?: string
  /** tags to advertise; the auth key's owner must own them */
  tags?: string[]
  /** the node is deleted from the controller when it closes (needs an ephemeral auth key) */
  ephemeral?: boolean
  /** the controller certificate's SHA-256 pin, when the auth key does not carry one */
  fingerprint?: string
  /** the WireGuard interface (default: a fresh `wrn` name, so several apps can run) */
  interfaceName?: string
  /** how long to wait for the node to join and get its map (default 60 s) */
  timeoutMs?: number
  /** the daemon's log level (default warn) */
  logLevel?: string
}

/** EmbeddedNode is a node running inside the app: the mesh view of `connect`, plus its own identity. */
export interface EmbeddedNode extends Warren {
  /** this node as its peers see it */
  readonly self: MeshPeer
  /**
   * close leaves the mesh: the interface, firewall table, routes, DNS settings and
   * wireguard-go are removed, and an ephemeral node is deleted from the controller
   */
  close(): Promise<void>
}

/** NodeEngine is the part of `@warren/node` that createNode uses, loaded only when it is called. */
interface NodeEngine {
  startDaemon(init: { stateDir: string, socketPath: string, interfaceName: string, wireguardMode: 'auto', logger: unknown }): Promise<{
    up(req: LocalUpRequest): Promise<LocalStatus>
    logout(): Promise<void>
    down(): Promise<LocalStatus>
    close(): Promise<void>
  }>
  createDaemonLogger(opts: { level?: string }): unknown
}

/** The engine's package name, kept out of a literal import so that installing the SDK alone stays possible. */
const NODE_ENGINE = '@warren/node'

/**
 * createNode runs a Warren node inside the app's process, with the daemon's engine: the
 * same WireGuard interface, nftables enforcement and MagicDNS as `warren node run`, so it
 * needs CAP_NET_ADMIN (root) like the daemon. It resolves once the node has joined and
 * has its map. `@warren/node` must be installed next to the SDK (an optional peer
 * dependency); a later rootless mode will take the same options without an interface.
 *
 * @example
 * ```ts
 * const node = await createNode({ controller: 'https://ctl:8443', authKey, stateDir: '/var/lib/myapp/warren', ephemeral: true })
 * const res = await node.fetch('http://api:8080/health')
 * await node.close()
 * ```
 */
export async function createNode (opts: CreateNodeOptions): Promise<EmbeddedNode> {
  let engine: NodeEngine
  try {
    engine = await import(NODE_ENGINE) as NodeEngine
  } catch (e) {
    throw new WarrenError('missing_dependency', `createNode runs the node engine in this process and needs '${NODE_ENGINE}' installed next to '@warren/sdk' (npm install ${NODE_ENGINE}); to use a node that already runs, call connect() instead`, { status: 500, cause: e })
  }
  await mkdir(opts.stateDir, { recursive: true, mode: 0o700 })
  const socketPath = join(opts.stateDir, 'warrend.sock')
  const interfaceName = opts.interfaceName ?? `wrn${randomBytes(4).toString('hex')}`
  const daemon = await engine.startDaemon({
    stateDir: opts.stateDir,
    socketPath,
    interfaceName,
    wireguardMode: 'auto',
    logger: engine.createDaemonLogger({ level: opts.logLevel ?? 'warn' })
  })
  let w: Warren
  try {
    await daemon.up({
      controller: opts.controller,
      authKey: opts.authKey,
      ...(opts.hostname !== undefined ? { hostname: opts.hostname } : {}),
      ...(opts.tags !== undefined ? { advertiseTags: opts.tags } : {}),
      ...(opts.fingerprint !== undefined ? { fingerprint: opts.fingerprint } : {})
    })
    w = await connect({ socket: socketPath, timeoutMs: opts.timeoutMs ?? 60_000 })
    const st = await w.status()
    if (opts.ephemeral === true && st.self?.ephemeral !== true) {
      await w.close()
      throw new WarrenError('invalid_input', 'ephemeral: true needs an ephemeral auth key, and this one made a lasting node; create one with \'warren admin keys create --ephemeral\'', { field: 'authKey' })
    }
  } catch (e) {
    await daemon.logout().catch(() => {})
    await daemon.close().catch(() => {})
    throw e
  }
  const self = (await w.peers()).find(p => p.self)!
  let closing: Promise<void> | undefined
  return {
    ...w,
    self,
    async close () {
      closing ??= (async () => {
        await w.close()
        if (opts.ephemeral === true) await daemon.logout()
        else await daemon.down()
        await daemon.close()
      })()
      await closing
    }
  }
}
