import { connect as netConnect, createServer, isIP, Socket, type Server } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import { Agent as HttpAgent, type AgentOptions, type Server as HttpServer } from 'node:http'
import { EventEmitter } from 'node:events'
import { Agent as UndiciAgent, fetch as undiciFetch, type Dispatcher, type RequestInit, type Response } from 'undici'
import { WarrenError, isWarrenError, parseHostPort, formatHostPort, parseIpAddress, formatIpAddress, type LocalStatus, type LocalMeshPeer, type LocalWhoisResponse, type LocalWatchEvent } from '@warren/protocol'
import { createLocalClient, type LocalClient } from './local-client.js'

/**
 * MeshErrorCode names why a mesh operation failed, as `WarrenError.code`:
 * - `ENOPEER`: no such node, or not visible to this one (the policy hides it)
 * - `EPEEROFFLINE`: the node exists but the controller says it is offline
 * - `ENOTALLOWED`: the policy forbids this flow (the receiving node rejected it)
 * - `ECONNREFUSED`: the flow is allowed but nothing listens on that port
 * - `ETIMEDOUT`: no answer in time
 * - `EDAEMON`: no Warren daemon answers on the socket, or it is not running a mesh
 */
export type MeshErrorCode = 'ENOPEER' | 'EPEEROFFLINE' | 'ENOTALLOWED' | 'ECONNREFUSED' | 'ETIMEDOUT' | 'EDAEMON'

/** MeshPeer is a node this one can see, as MagicDNS knows it. */
export interface MeshPeer {
  id: string
  /** the short name (`db`) and the full name (`db.warren.internal`) both resolve */
  name: string
  fqdn: string
  user?: string
  tags: string[]
  /** mesh addresses, IPv4 first */
  addresses: string[]
  /** as the controller last said; this node itself is always online */
  online: boolean
  /** true for this node itself */
  self: boolean
}

/**
 * MeshEvent is one change `watch` reports: `snapshot` (first: the state and every peer),
 * `state`, `peer-added`, `peer-removed`, `peer-up`, `peer-down`, `peer-changed` (with the
 * `fields` that changed), `policy-applied` (a new inbound policy is enforced on this node).
 */
export interface MeshEvent {
  type: LocalWatchEvent['type']
  time: string
  /** the daemon's backend state, on `snapshot` and `state` */
  state?: string
  peers?: MeshPeer[]
  peer?: MeshPeer
  fields?: string[]
}

/** Identity is who is on the other end of a mesh connection, as the controller vouches for it. */
export interface Identity {
  node: { id: string, name: string, fqdn: string, addresses: string[] }
  /** the owner of a user's node; absent for tagged nodes */
  user?: string
  tags: string[]
  addresses: string[]
  /** capabilities the policy grants the caller on this node (grants' `app`: name -> values); empty when it grants none */
  capabilities: Record<string, unknown[]>
}

export interface ConnectOptions {
  /** the daemon's LocalAPI socket (default: $WARREN_SOCKET, then /var/run/warren/warrend.sock) */
  socket?: string
  /** how long to wait for the daemon to have its map (default 30 s) */
  timeoutMs?: number
  signal?: AbortSignal
}

export interface DialOptions {
  signal?: AbortSignal
  /** connect timeout (default 10 s) */
  timeoutMs?: number
  /** which of the peer's addresses (default 4) */
  family?: 4 | 6
}

/** MeshServer accepts connections on this node's mesh addresses only. */
export interface MeshServer extends EventEmitter {
  /** the addresses and port it listens on, `[IPv6]:port` for IPv6 */
  readonly addresses: string[]
  /** 'connection' (socket, identity) for every caller the mesh vouches for; others are closed */
  on(event: 'connection', listener: (socket: Socket, peer: Identity) => void): this
  on(event: 'error', listener: (err: Error) => void): this
  /** close stops accepting and resolves once every connection it accepted has ended, as net.Server's close does */
  close(): Promise<void>
  /** closeAllConnections cuts every connection it accepted that is still open */
  closeAllConnections(): void
}

/**
 * Warren is an app's view of the mesh through the local daemon: names, identities, and
 * Node's own socket types for dialing and listening. Every failure is a WarrenError with
 * a MeshErrorCode.
 */
export interface Warren {
  status(): Promise<LocalStatus>
  /** peers lists the nodes this one can see, itself first */
  peers(): Promise<MeshPeer[]>
  /** resolve finds a node by short name, full name or mesh address (ENOPEER if none) */
  resolve(name: string): Promise<MeshPeer>
  /**
   * whois says who a mesh address belongs to, or who is on the far end of an accepted
   * socket. A socket qualifies only if it arrived through the mesh: its local address is
   * one of this node's mesh addresses and the far end is a peer's; anything else (a local
   * process, a LAN address) is refused with ENOPEER, so an app cannot be fooled.
   */
  whois(addressOrSocket: string | Socket): Promise<Identity>
  /** dial connects to `name:port` (also `fqdn:port`, `address:port`, `[v6]:port`) */
  dial(target: string, opts?: DialOptions): Promise<Socket>
  /**
   * createConnection is net.connect's shape for http.Agent and tls.connect({ socket }):
   * the host is a mesh name or address. Errors arrive as the socket's 'error' event.
   */
  createConnection(opts: { host?: string, port?: number | string, timeout?: number }, cb?: () => void): Socket
  /** httpAgent is a node:http Agent that dials over the mesh */
  httpAgent(opts?: AgentOptions): HttpAgent
  /** dispatcher is an undici Dispatcher that dials over the mesh (for undici.fetch and request) */
  dispatcher(): Dispatcher
  /**
   * fetch is fetch() whose connections go over the mesh: `http://db:8080/health`. A mesh
   * failure (ENOPEER, ENOTALLOWED, ...) is thrown as the WarrenError itself, not as
   * fetch's generic TypeError.
   */
  fetch(url: string | URL, init?: RequestInit): Promise<Response>
  /**
   * listen serves `port` on this node's mesh addresses only. With `server` (an http.Server
   * or net.Server), connections are handed to it after their caller is verified.
   */
  listen(port: number, server?: HttpServer | Server): Promise<MeshServer>
  /** watch yields changes as they happen, a snapshot first, until `signal` aborts */
  watch(opts?: { signal?: AbortSignal }): AsyncIterable<MeshEvent>
  /** close stops the servers `listen` started, cutting their open connections, and the HTTP agents */
  close(): Promise<void>
}

const meshError = (code: MeshErrorCode, message: string, cause?: unknown): WarrenError =>
  new WarrenError(code, message, { status: code === 'EDAEMON' ? 503 : code === 'ENOTALLOWED' ? 403 : code === 'ENOPEER' ? 404 : 502, ...(cause !== undefined ? { cause } : {}) })

/**
 * normalize writes an address in canonical text, so that any spelling of it compares equal
 * (an IPv4-mapped IPv6 address, as sockets report them, becomes plain IPv4); a name is
 * only lowercased.
 */
function normalize (text: string): string {
  const t = text.toLowerCase()
  const a = parseIpAddress(t.startsWith('::ffff:') && isIP(t.slice(7)) === 4 ? t.slice(7) : t)
  return a === undefined ? t : formatIpAddress(a.family, a.network)
}

function peerOf (p: LocalMeshPeer): MeshPeer {
  return { id: p.id, name: p.name, fqdn: p.fqdn, ...(p.user !== undefined ? { user: p.user } : {}), tags: p.tags, addresses: [p.ipv4, p.ipv6], online: p.online, self: false }
}

function selfOf (s: Pick<LocalStatus, 'self'>): MeshPeer | undefined {
  const n = s.self
  if (n === undefined) return undefined
  return { id: n.id, name: n.name, fqdn: n.fqdn, ...(n.user !== undefined ? { user: n.user } : {}), tags: n.tags, addresses: [n.ipv4, n.ipv6], online: true, self: true }
}

function identityOf (w: LocalWhoisResponse): Identity {
  const addresses = [w.node.ipv4, w.node.ipv6]
  return {
    node: { id: w.node.id, name: w.node.name, fqdn: w.node.fqdn, addresses },
    ...(w.user !== undefined ? { user: w.user } : {}),
    tags: w.tags,
    addresses,
    capabilities: w.capabilities ?? {}
  }
}

/** sleep waits ms, or rejects when the signal aborts. */
async function sleep (ms: number, signal?: AbortSignal): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve() }, ms)
    const onAbort = (): void => { clearTimeout(timer); reject(signal!.reason) }
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

/** daemonError turns a LocalAPI failure into EDAEMON (the daemon is gone) or keeps the daemon's own error. */
function daemonError (e: unknown): Error {
  if (isWarrenError(e) && (e.code === 'daemon_unreachable' || e.code === 'unreachable' || e.code === 'timeout')) return meshError('EDAEMON', e.message, e)
  return e as Error
}

/**
 * connect opens the mesh through the local daemon's LocalAPI and resolves once the daemon
 * is running with its map, so the first dial can use names.
 *
 * @example
 * ```ts
 * const w = await connect()
 * const sock = await w.dial('db:5432')
 * const res = await w.fetch('http://api/health')
 * ```
 */
export async function connect (opts: ConnectOptions = {}): Promise<Warren> {
  const local = createLocalClient({ ...(opts.socket !== undefined ? { socketPath: opts.socket } : {}), timeoutMs: 10_000 })
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000)
  let last: LocalStatus | undefined
  for (;;) {
    opts.signal?.throwIfAborted()
    try {
      last = await local.status()
    } catch (e) {
      throw daemonError(e)
    }
    if (last.backendState === 'Running' && last.self !== undefined) break
    if (Date.now() > deadline) {
      throw meshError('EDAEMON', `the Warren daemon on ${local.socketPath} is ${last.backendState}, not running a mesh${last.health.length > 0 ? `: ${last.health.join('; ')}` : ''}; run 'warren up' first`)
    }
    await sleep(250, opts.signal)
  }
  return createWarren(local)
}

/**
 * PEER_CACHE_MS is how long resolve (and so dial) reuses the daemon's peer list. Asking for
 * it is a LocalAPI round trip, GET /v1/peers (the map alone): about 1 ms here, against about
 * 0.5 ms for the connection itself and 8 ms for GET /v1/status, which also runs `wg show
 * dump` (bench/RESULTS.md, "SDK: dial and stream"). A name that is missing or offline in the
 * reused list is asked for again.
 */
const PEER_CACHE_MS = 1000

/** createWarren builds the mesh view on a LocalAPI client (connect() waits for the map first). */
export function createWarren (local: LocalClient): Warren {
  let agent: HttpAgent | undefined
  let undici: UndiciAgent | undefined
  const servers = new Set<MeshServer>()

  /** ask makes one LocalAPI call; a daemon that is gone is EDAEMON. */
  async function ask<T> (call: (c: LocalClient) => Promise<T>): Promise<T> {
    try {
      return await call(local)
    } catch (e) {
      throw daemonError(e)
    }
  }

  const status = async (): Promise<LocalStatus> => await ask(async c => await c.status())

  // The last peer list and when it was asked for; a pending one is shared by concurrent dials.
  let recent: { at: number, peers: Promise<MeshPeer[]> } | undefined

  async function peers (): Promise<MeshPeer[]> {
    const list = ask(async c => await c.peers()).then(s => {
      const self = selfOf(s)
      return [...(self !== undefined ? [self] : []), ...s.peers.map(peerOf)]
    })
    const entry = { at: Date.now(), peers: list }
    recent = entry
    list.catch(() => { if (recent === entry) recent = undefined })
    return await list
  }

  async function resolve (name: string): Promise<MeshPeer> {
    const want = normalize(name.trim().replace(/\.$/, ''))
    const find = (all: MeshPeer[]): MeshPeer | undefined =>
      all.find(p => p.name === want || p.fqdn.replace(/\.$/, '') === want || p.addresses.some(a => normalize(a) === want))
    const cached = recent !== undefined && Date.now() - recent.at < PEER_CACHE_MS ? recent.peers : undefined
    let hit = find(await (cached ?? peers()))
    // Only a fresh list may say no: a node that just appeared or came back online is found at once.
    if (cached !== undefined && (hit === undefined || !hit.online)) hit = find(await peers())
    if (hit === undefined) throw meshError('ENOPEER', `no node '${name}' in this node's mesh: it does not exist, or the policy does not let this node see it ('warren status' lists the peers)`)
    // A copy: the reused list stays as the daemon said it.
    return structuredClone(hit)
  }

  /**
   * selfAddresses asks the daemon for this node's mesh addresses (GET /v1/ip): the map
   * alone, so a caller is checked without the WireGuard counters status reads.
   */
  async function selfAddresses (): Promise<string[]> {
    try {
      return (await local.ip()).addresses
    } catch (e) {
      if (isWarrenError(e) && e.code === 'not_running') return []
      throw daemonError(e)
    }
  }

  async function whois (addressOrSocket: string | Socket): Promise<Identity> {
    let address: string
    if (typeof addressOrSocket === 'string') {
      address = normalize(addressOrSocket)
    } else {
      const remote = addressOrSocket.remoteAddress
      const localAddr = addressOrSocket.localAddress
      if (remote === undefined || localAddr === undefined) throw meshError('ENOPEER', 'the socket is not connected, so it has no caller to identify')
      const mine = (await selfAddresses()).map(normalize)
      if (!mine.includes(normalize(localAddr))) {
        throw meshError('ENOPEER', `the connection arrived at ${localAddr}, not at one of this node's mesh addresses (${mine.join(', ')}): it did not come through the mesh`)
      }
      address = normalize(remote)
      if (mine.includes(address)) throw meshError('ENOPEER', `the connection comes from this node itself (${remote}), not from a peer through the mesh`)
    }
    let w: LocalWhoisResponse
    try {
      w = await local.whois(address)
    } catch (e) {
      if (isWarrenError(e) && (e.status === 404 || e.code === 'not_found' || e.code === 'unknown_peer')) throw meshError('ENOPEER', `no node in this node's mesh has the address ${address}`, e)
      throw daemonError(e)
    }
    if (typeof addressOrSocket !== 'string' && w.self) throw meshError('ENOPEER', `the connection comes from this node itself (${address})`)
    return identityOf(w)
  }

  /** target resolves `name:port` to the address to connect to. */
  async function target (text: string, family: 4 | 6 = 4): Promise<{ host: string, port: number, peer: MeshPeer }> {
    const { host, port } = parseHostPort(text, 'dial target')
    if (host === '' || port === 0) throw new WarrenError('invalid_input', `dial target '${text}' must be NAME:PORT, ADDRESS:PORT or [IPv6]:PORT with a port above 0`, { field: 'target' })
    const peer = await resolve(host)
    if (!peer.online) throw meshError('EPEEROFFLINE', `node '${peer.name}' is offline (the controller last saw it disconnected); try again when it is back`)
    const addr = isIP(host) !== 0 ? normalize(host) : peer.addresses.find(a => isIP(a) === family) ?? peer.addresses[0]!
    return { host: addr, port, peer }
  }

  /** socketError maps a connect failure to the mesh's codes. */
  function socketError (e: NodeJS.ErrnoException, where: string, peer: string): Error {
    switch (e.code) {
      case 'EHOSTUNREACH':
      case 'EACCES':
      case 'EPERM':
        return meshError('ENOTALLOWED', `the policy does not allow this node to reach ${where} (node '${peer}' refused the connection)`, e)
      case 'ECONNREFUSED':
        return meshError('ECONNREFUSED', `nothing listens on ${where} (node '${peer}' is reachable and the policy allows the port)`, e)
      case 'ETIMEDOUT':
        return meshError('ETIMEDOUT', `no answer from ${where} (node '${peer}')`, e)
      default:
        return e
    }
  }

  async function dial (text: string, opts: DialOptions = {}): Promise<Socket> {
    opts.signal?.throwIfAborted()
    const t = await target(text, opts.family)
    const where = formatHostPort(t.host, t.port)
    const timeoutMs = opts.timeoutMs ?? 10_000
    return await new Promise<Socket>((resolve, reject) => {
      const sock = netConnect({ host: t.host, port: t.port })
      const timer = setTimeout(() => fail(meshError('ETIMEDOUT', `no answer from ${where} (node '${t.peer.name}') within ${timeoutMs} ms`)), timeoutMs)
      const onAbort = (): void => fail(opts.signal!.reason as Error)
      opts.signal?.addEventListener('abort', onAbort, { once: true })
      function done (): void {
        clearTimeout(timer)
        opts.signal?.removeEventListener('abort', onAbort)
        sock.off('error', onError)
      }
      function fail (e: Error): void {
        done()
        sock.destroy()
        reject(e)
      }
      const onError = (e: NodeJS.ErrnoException): void => fail(socketError(e, where, t.peer.name))
      sock.once('error', onError)
      sock.once('connect', () => { done(); resolve(sock) })
    })
  }

  function createConnection (opts: { host?: string, port?: number | string, timeout?: number }, cb?: () => void): Socket {
    // An Agent needs the socket now: return it, resolve the name, then connect it. A name
    // that does not resolve (ENOPEER, EPEEROFFLINE) arrives as the socket's 'error'.
    const sock = new Socket()
    // Writes made before the name resolves wait, as they do while a socket connects.
    ;(sock as { connecting: boolean }).connecting = true
    target(formatHostPort(opts.host ?? 'localhost', Number(opts.port ?? 80))).then(
      t => { sock.connect({ host: t.host, port: t.port }, cb) },
      (e: Error) => { sock.destroy(e) })
    return sock
  }

  const w: Warren = {
    status,
    peers,
    resolve,
    whois,
    dial,
    createConnection,
    httpAgent (opts = {}) {
      if (Object.keys(opts).length === 0 && agent !== undefined) return agent
      const a = new HttpAgent({ keepAlive: true, ...opts })
      // http.Agent takes a socket from createConnection's callback when it returns none: the
      // dial resolves the mesh name first, and its errors are the mesh's codes.
      ;(a as unknown as { createConnection: (o: { host?: string, port?: number | string }, cb: (err: Error | null, s?: Socket) => void) => undefined }).createConnection = (o, cb) => {
        dial(formatHostPort(o.host ?? 'localhost', Number(o.port ?? 80))).then(s => cb(null, s), (e: Error) => cb(e))
        return undefined
      }
      if (Object.keys(opts).length === 0) agent = a
      return a
    },
    dispatcher () {
      undici ??= new UndiciAgent({
        connect: (o, cb) => {
          const https = o.protocol === 'https:'
          const port = Number(o.port !== '' ? o.port : https ? 443 : 80)
          dial(formatHostPort(o.hostname, port)).then(s => {
            if (!https) { cb(null, s); return }
            // TLS over the mesh connection, checked against the name the URL gave.
            const tls = tlsConnect({ socket: s, servername: o.servername ?? o.hostname, ALPNProtocols: ['http/1.1'] })
            tls.once('secureConnect', () => cb(null, tls))
            tls.once('error', e => cb(e, null))
          }, (e: Error) => cb(e, null))
        }
      })
      return undici
    },
    async fetch (url, init = {}) {
      try {
        return await undiciFetch(url, { ...init, dispatcher: w.dispatcher() })
      } catch (e) {
        // fetch wraps a failed connect in TypeError('fetch failed'); the mesh's reason is its cause.
        const cause = (e as { cause?: unknown }).cause
        throw isWarrenError(cause) ? cause : e
      }
    },
    async listen (port, server) {
      const self = selfOf(await ask(async c => await c.peers()))
      if (self === undefined) throw meshError('EDAEMON', 'the daemon has no mesh addresses yet; run \'warren up\' first')
      const ms = createMeshServer(w, self.addresses, port, server)
      await ms.ready
      servers.add(ms.server)
      ms.server.once('close', () => servers.delete(ms.server))
      return ms.server
    },
    async * watch (opts = {}) {
      try {
        for await (const e of local.watch(opts)) {
          yield {
            type: e.type,
            time: e.time,
            ...(e.backendState !== undefined ? { state: e.backendState } : {}),
            ...(e.peers !== undefined ? { peers: e.peers.map(peerOf) } : {}),
            ...(e.peer !== undefined ? { peer: peerOf(e.peer) } : {}),
            ...(e.fields !== undefined ? { fields: e.fields } : {})
          }
        }
      } catch (e) {
        throw daemonError(e)
      }
    },
    async close () {
      await Promise.allSettled([...servers].map(async srv => { srv.closeAllConnections(); await srv.close() }))
      agent?.destroy()
      await undici?.close()
    }
  }
  return w
}

/** createMeshServer listens on each mesh address and hands verified callers on. */
function createMeshServer (w: Warren, addresses: string[], port: number, server?: HttpServer | Server): { server: MeshServer, ready: Promise<void> } {
  const emitter = new EventEmitter() as MeshServer
  const listeners: Server[] = []
  const bound: string[] = []
  const accepted = new Set<Socket>()
  Object.defineProperty(emitter, 'addresses', { get: () => [...bound] })
  const onSocket = (sock: Socket): void => {
    accepted.add(sock)
    sock.once('close', () => accepted.delete(sock))
    w.whois(sock).then(peer => {
      if (sock.destroyed) return
      unpause(sock)
      emitter.emit('connection', sock, peer)
      server?.emit('connection', sock)
    }, (e: Error) => {
      sock.destroy()
      if (!isWarrenError(e) || e.code !== 'ENOPEER') emitter.emit('error', e)
    })
  }
  const ready = Promise.all(addresses.map(async addr => {
    // Paused until the caller is verified: nothing is read (and a quick close is not processed) before the app sees it.
    const l = createServer({ pauseOnConnect: true }, onSocket)
    listeners.push(l)
    await new Promise<void>((resolve, reject) => {
      l.once('error', reject)
      l.listen({ host: addr, port, ipv6Only: isIP(addr) === 6 }, () => { l.off('error', reject); resolve() })
    })
    const a = l.address()
    bound.push(typeof a === 'object' && a !== null ? formatHostPort(a.address, a.port) : addr)
  })).then(() => undefined, async (e: Error) => {
    await Promise.allSettled(listeners.map(async l => await new Promise(resolve => l.close(resolve))))
    throw e
  })
  emitter.closeAllConnections = () => { for (const sock of accepted) sock.destroy() }
  emitter.close = async () => {
    await Promise.allSettled(listeners.map(async l => await new Promise(resolve => l.close(resolve))))
    emitter.emit('close')
  }
  return { server: emitter, ready }
}

/**
 * unpause undoes `pauseOnConnect` once the caller is verified, leaving the socket as a
 * plain net.Server hands it over: reading, and neither flowing nor paused. pauseOnConnect
 * marks it paused (readableFlowing false), and a 'data' listener does not undo that, so an
 * app's reader would never get a byte, and the caller's end would never be seen.
 */
function unpause (sock: Socket): void {
  ;(sock as { readableFlowing: boolean | null }).readableFlowing = null
  // What net.Socket does for an accepted connection that is not paused: start reading.
  sock.read(0)
}
