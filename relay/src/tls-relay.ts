import type { IncomingMessage, Server } from 'node:http'
import type { Duplex } from 'node:stream'
import { randomBytes } from 'node:crypto'
import { WebSocketServer } from 'ws'
import {
  PROTOCOL_VERSION, RELAY_DOMAIN, TLS_RELAY_PATH, TLS_RELAY_UPGRADE, RelayFrameType, RelayHello, RELAY_MAX_PACKET,
  relaySigningPayload, readRelayIndex, readRelayBatchSize, forEachBatchPacket, decodeRelayControlText, encodeRelayPeer, encodeRelayFrame, parseJson, checkProtocolVersion,
  fromBase64, toBase64
} from '@warren/protocol'
import { createRelayLink, type RelayLink, type RelayCarrier } from '@warren/sdk/transport'
import { writeRawError } from './raw-http.js'
import { verifyMachineSignature } from './verify.js'
import type { RelayLogger } from './udp-relay.js'

/** TlsRelayOptions tune the TLS relay; every limit is per node. */
export interface TlsRelayOptions {
  /** bytes per second a node may send through the relay (default 64 MiB/s); more is dropped */
  rateBytesPerSecond?: number
  /** bytes a node may send in one burst above its rate (default a quarter second of rate) */
  burstBytes?: number
  /** frames are dropped while a receiving node's link holds more unsent bytes than this (default 2 MiB) */
  highWaterBytes?: number
  /** the largest WireGuard packet relayed (default 16 KiB) */
  maxPacket?: number
  /** how long a new connection may take to send its signed hello (default 10 s) */
  helloTimeoutMs?: number
  /** a link that sends nothing (not even a PING) for this long is closed (default 60 s) */
  idleTimeoutMs?: number
}

/** TlsRelayNode is a node as the TLS relay needs it. */
export interface TlsRelayNode {
  id: string
  name: string
  /** the WireGuard key its peers name it by in PEER frames */
  wgKey: string
}

/**
 * TlsRelayMembers say who may use the relay and who may talk to whom: the controller's
 * own registry and mesh for the relay it embeds, a mirror the controller keeps up to
 * date over the relay link for a standalone one (createRelayMembers).
 */
export interface TlsRelayMembers {
  /** byMachineKey is the node registered with this machine key, if any */
  byMachineKey: (machineKey: string) => TlsRelayNode | undefined
  /** node is a node's current record; undefined once it is gone */
  node: (id: string) => TlsRelayNode | undefined
  /** isMember: the node may use the relay now (active, not expired) */
  isMember: (id: string) => boolean
  /** peersOf are the nodes the policy lets this one talk to, as its map shows them */
  peersOf: (id: string) => ReadonlySet<string>
}

/** TlsRelayDeps are what the relay reads (its members) and where it reports. */
export interface TlsRelayDeps {
  members: TlsRelayMembers
  /** onDropped hears each dropped frame's reason (for metrics) */
  onDropped?: (reason: TlsRelayDropReason) => void
  log?: RelayLogger
}

/** TlsRelayStats are counters for tests and benchmarks. */
export interface TlsRelayStats {
  links: number
  framesIn: number
  bytesIn: number
  framesOut: number
  /** dropped frames by reason */
  dropped: Record<TlsRelayDropReason, number>
}

/** TlsRelayDropReason is why a frame was not relayed. */
export type TlsRelayDropReason = 'offline' | 'denied' | 'rate' | 'backpressure'

export interface TlsRelay {
  /** handleUpgrade takes a request for TLS_RELAY_PATH: the framed stream or a WebSocket */
  handleUpgrade: (req: IncomingMessage, socket: Duplex, head: Buffer) => void
  /**
   * attach serves TLS_RELAY_PATH on a server's upgrades; returns a function that detaches.
   * `otherPaths` are served by other upgrade listeners on the same server.
   */
  attach: (server: Server, otherPaths?: readonly string[]) => () => void
  /**
   * meshChanged re-checks every relayed pair at the next frame, and now cuts the nodes
   * (of `ids`, or all) that left the mesh, were deleted or re-keyed: call it after each
   * change of the policy or of a node.
   */
  meshChanged: (ids?: Iterable<string>) => void
  stats: () => TlsRelayStats
  close: () => Promise<void>
}

interface Route {
  /** the peer's WireGuard key as the sender named it */
  wgKey: string
  wgKeyBytes: Uint8Array
  /** generation at which target and allowed were worked out */
  gen: number
  target?: NodeLink
  allowed: boolean
}

interface NodeLink {
  node: TlsRelayNode
  wgKeyBytes: Uint8Array
  link: RelayLink
  /** the indexes this node chose for its peers */
  routes: Map<number, Route>
  /** the indexes the relay chose, on this link, for the nodes that send to it */
  senders: Map<string, number>
  nextSender: number
  peersGen: number
  peerSet: ReadonlySet<string>
  tokens: number
  refilled: number
  lastHeard: number
  /** the node takes BATCH frames (its hello said so) */
  batch: boolean
}

const MAX_ROUTES = 0x10000

/**
 * createTlsRelay relays WireGuard packets between nodes over their TLS connections to
 * the relay. A node proves its machine key as on the map session (challenge, signed
 * hello); a frame goes from A to B only while both are members of the mesh and the policy
 * lets them talk (the peer sets the map sends), and only while B is connected; anything
 * else is dropped and counted. Each pair's verdict is kept until the mesh changes, so a
 * frame costs two map lookups; meshChanged makes every pair be judged again at its next
 * frame, and closes the links of nodes that left the mesh, so revocation takes effect at
 * once. Frames a node sends in one event-loop turn leave for each receiver as one write.
 */
export function createTlsRelay (deps: TlsRelayDeps, opts: TlsRelayOptions = {}): TlsRelay {
  const rate = opts.rateBytesPerSecond ?? 64 * 1024 * 1024
  const burst = opts.burstBytes ?? Math.max(rate / 4, 256 * 1024)
  const maxPacket = Math.min(opts.maxPacket ?? 16 * 1024, RELAY_MAX_PACKET)
  const helloTimeoutMs = opts.helloTimeoutMs ?? 10_000
  const idleTimeoutMs = opts.idleTimeoutMs ?? 60_000
  // Every frame handler below copies what it keeps (packets into the receiver's write, keys with slice).
  const linkOpts = { highWaterBytes: opts.highWaterBytes ?? 2 * 1024 * 1024, maxPacket, framesCopied: true }
  const { members, log } = deps
  const wss = new WebSocketServer({ noServer: true, maxPayload: 4 * 1024 * 1024, perMessageDeflate: false })
  const byNode = new Map<string, NodeLink>()
  const byWgKey = new Map<string, NodeLink>()
  const pending = new Set<RelayLink>()
  let generation = 0
  let closed = false
  const counts: TlsRelayStats = { links: 0, framesIn: 0, bytesIn: 0, framesOut: 0, dropped: { offline: 0, denied: 0, rate: 0, backpressure: 0 } }

  const drop = (reason: TlsRelayDropReason): void => {
    counts.dropped[reason]++
    deps.onDropped?.(reason)
  }

  function detach (nl: NodeLink): void {
    if (byNode.get(nl.node.id) === nl) byNode.delete(nl.node.id)
    if (byWgKey.get(nl.node.wgKey) === nl) byWgKey.delete(nl.node.wgKey)
    generation++
  }

  function cut (nl: NodeLink, code: string, message: string): void {
    detach(nl)
    nl.link.close({ code, message })
  }

  /** judge works out where a route leads and whether the policy allows it, once per generation. */
  function judge (from: NodeLink, r: Route): void {
    r.gen = generation
    r.target = byWgKey.get(r.wgKey)
    if (r.target === undefined) { r.allowed = false; return }
    if (from.peersGen !== generation) {
      from.peerSet = members.isMember(from.node.id) ? members.peersOf(from.node.id) : new Set()
      from.peersGen = generation
    }
    r.allowed = from.peerSet.has(r.target.node.id) && members.isMember(r.target.node.id)
  }

  /** senderIndex is the index that stands for `from` on `to`'s link, announced with a PEER frame when new. */
  function senderIndex (to: NodeLink, from: NodeLink): number | undefined {
    const known = to.senders.get(from.node.wgKey)
    if (known !== undefined) return known
    if (to.senders.size >= MAX_ROUTES) {
      to.senders.clear()
      to.nextSender = 0
    }
    const index = to.nextSender++ & 0xffff
    if (!to.link.sendFrame(encodeRelayPeer(index, from.wgKeyBytes))) return undefined
    to.senders.set(from.node.wgKey, index)
    return index
  }

  function takeTokens (nl: NodeLink, bytes: number): boolean {
    const now = performance.now()
    nl.tokens = Math.min(burst, nl.tokens + (now - nl.refilled) * rate / 1000)
    nl.refilled = now
    if (nl.tokens < bytes) return false
    nl.tokens -= bytes
    return true
  }

  /** onData relays a DATA frame, or a BATCH frame when `batch`. */
  function onData (nl: NodeLink, body: Uint8Array, batch: boolean): void {
    const r = nl.routes.get(readRelayIndex(body))
    if (r === undefined) {
      cut(nl, 'unknown_peer_index', `${batch ? 'BATCH' : 'DATA'} frame for peer index ${readRelayIndex(body)}, which no PEER frame on this connection named; send a PEER frame first`)
      return
    }
    const packets = body.subarray(batch ? 4 : 2)
    counts.framesIn++
    counts.bytesIn += packets.length
    if (!takeTokens(nl, packets.length)) { drop('rate'); return }
    if (r.gen !== generation) judge(nl, r)
    const to = r.target
    if (to === undefined) { drop('offline'); return }
    if (!r.allowed) { drop('denied'); return }
    const index = senderIndex(to, nl)
    if (index === undefined) { drop('backpressure'); return }
    // The packets are a view into the chunk just read; the link copies them into this turn's write.
    if (!batch) {
      if (!to.link.sendData(index, packets)) { drop('backpressure'); return }
      counts.framesOut++
    } else if (to.batch) {
      if (!to.link.sendBatch(index, readRelayBatchSize(body), packets)) { drop('backpressure'); return }
      counts.framesOut++
    } else {
      forEachBatchPacket(body, packet => {
        if (to.link.sendData(index, packet)) counts.framesOut++
        else drop('backpressure')
      })
    }
  }

  function onPeer (nl: NodeLink, body: Uint8Array): void {
    const index = readRelayIndex(body)
    const keyBytes = body.slice(2)
    if (!nl.routes.has(index) && nl.routes.size >= MAX_ROUTES) {
      cut(nl, 'too_many_peers', `a connection may name at most ${MAX_ROUTES} peers`)
      return
    }
    nl.routes.set(index, { wgKey: toBase64(keyBytes), wgKeyBytes: keyBytes, gen: -1, allowed: false })
  }

  function welcome (link: RelayLink, node: TlsRelayNode, batch: boolean): NodeLink {
    const old = byNode.get(node.id)
    if (old !== undefined) cut(old, 'relay_replaced', 'another relay connection for this node started; this one is closed')
    const nl: NodeLink = {
      node,
      wgKeyBytes: fromBase64(node.wgKey, 32)!,
      link,
      routes: new Map(),
      senders: new Map(),
      nextSender: 0,
      peersGen: -1,
      peerSet: new Set(),
      tokens: burst,
      refilled: performance.now(),
      lastHeard: Date.now(),
      batch
    }
    byNode.set(node.id, nl)
    byWgKey.set(node.wgKey, nl)
    generation++
    link.sendControl({ type: 'welcome', node: node.id, maxPacket, batch: true })
    log?.debug({ node: node.id }, 'tls relay link up')
    return nl
  }

  /** checkHello authenticates a hello as the map does: this link's nonce, signed by a registered node's machine key. */
  function checkHello (text: string, nonce: string): { node: TlsRelayNode, batch: boolean } | { code: string, message: string } {
    let hello: RelayHello
    try {
      const raw = JSON.parse(text) as { version?: unknown }
      if (typeof raw?.version === 'number') checkProtocolVersion(raw.version, 'this node')
      hello = parseJson(RelayHello, text, 'relay hello')
    } catch (e) {
      return { code: (e as { code?: string }).code ?? 'invalid_input', message: (e as Error).message }
    }
    if (hello.nonce !== nonce) return { code: 'bad_nonce', message: 'relay hello signs a different nonce than this connection\'s challenge; sign the nonce just received' }
    if (!verifyMachineSignature(hello.machineKey, RELAY_DOMAIN, relaySigningPayload(hello.nonce, hello.machineKey, hello.version), hello.signature)) {
      return { code: 'bad_signature', message: 'relay hello signature does not verify with the machine key it names; sign the challenge with the node\'s own machine key' }
    }
    const node = members.byMachineKey(hello.machineKey)
    if (node === undefined) return { code: 'unknown_node', message: 'no node is registered with this machine key (it may have been deleted); join again with an auth key' }
    if (!members.isMember(node.id)) return { code: 'node_expired', message: `node '${node.name}' is not an active member of the mesh (expired or awaiting approval)` }
    return { node, batch: hello.batch === true }
  }

  /** accept runs a new connection: challenge, hello within helloTimeoutMs, then frames. */
  function accept (carrier: RelayCarrier): void {
    const nonce = randomBytes(24).toString('base64url')
    let nl: NodeLink | undefined
    const link: RelayLink = createRelayLink(carrier, {
      onFrame (type, body) {
        if (nl !== undefined) {
          nl.lastHeard = Date.now()
          if (type === RelayFrameType.Data) onData(nl, body, false)
          else if (type === RelayFrameType.Batch) onData(nl, body, true)
          else if (type === RelayFrameType.Peer) onPeer(nl, body)
          else if (type === RelayFrameType.Ping) link.sendFrame(encodeRelayFrame(RelayFrameType.Pong, body.slice()))
          else if (type === RelayFrameType.Control) cut(nl, 'unexpected_message', 'hello was already received on this connection')
          return
        }
        if (type !== RelayFrameType.Control) {
          link.close({ code: 'unauthenticated', message: 'the first frame must be a signed hello answering the challenge' })
          return
        }
        clearTimeout(helloTimer)
        pending.delete(link)
        const checked = checkHello(decodeRelayControlText(body), nonce)
        if ('node' in checked) nl = welcome(link, checked.node, checked.batch)
        else link.close(checked)
      },
      onClose () {
        clearTimeout(helloTimer)
        pending.delete(link)
        if (nl !== undefined) {
          detach(nl)
          log?.debug({ node: nl.node.id }, 'tls relay link down')
        }
      }
    }, linkOpts)
    pending.add(link)
    const helloTimer = setTimeout(() => link.close({ code: 'hello_timeout', message: `no signed hello within ${helloTimeoutMs} ms of the challenge` }), helloTimeoutMs)
    link.sendControl({ type: 'challenge', version: PROTOCOL_VERSION, nonce })
  }

  function handleUpgrade (req: IncomingMessage, socket: Duplex, head: Buffer): void {
    if (closed) { socket.destroy(); return }
    const upgrade = (req.headers.upgrade ?? '').toLowerCase()
    if (req.method !== 'GET') {
      writeRawError(socket, 405, 'bad_upgrade', `the relay upgrade must be GET, not ${req.method ?? '?'}`)
    } else if (upgrade === TLS_RELAY_UPGRADE) {
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${TLS_RELAY_UPGRADE}\r\n\r\n`)
      if (head.length > 0) socket.unshift(head)
      ;(socket as { setNoDelay?: (b: boolean) => void }).setNoDelay?.(true)
      accept(socket)
    } else if (upgrade === 'websocket') {
      wss.handleUpgrade(req, socket, head, ws => accept(ws))
    } else {
      writeRawError(socket, 400, 'bad_upgrade', `the relay at ${TLS_RELAY_PATH} takes Upgrade: ${TLS_RELAY_UPGRADE} (or websocket through proxies), not '${upgrade}'`)
    }
  }

  const idleSweep = setInterval(() => {
    const limit = Date.now() - idleTimeoutMs
    for (const nl of [...byNode.values()]) if (nl.lastHeard < limit) cut(nl, 'idle', `nothing heard for ${idleTimeoutMs} ms`)
  }, Math.max(1000, idleTimeoutMs / 2))
  idleSweep.unref()

  /** recheck cuts a node that may no longer relay (gone, left the mesh, re-keyed), else takes its new record. */
  function recheck (nl: NodeLink): void {
    const n = members.node(nl.node.id)
    const why: [string, string] | undefined = n === undefined
      ? ['node_deleted', `node '${nl.node.name}' was deleted from the network`]
      : !members.isMember(n.id)
          ? ['node_expired', `node '${n.name}' is no longer a member of the mesh (expired or no longer approved)`]
          : n.wgKey !== nl.node.wgKey ? ['rekeyed', 'the node\'s WireGuard key changed; reconnect'] : undefined
    if (why === undefined) {
      nl.node = n!
      return
    }
    log?.info({ node: nl.node.id, code: why[0] }, 'tls relay link cut: the node may no longer relay')
    cut(nl, ...why)
  }

  return {
    handleUpgrade,
    attach (server, otherPaths = []) {
      const listener = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
        const path = (req.url ?? '').split('?')[0]
        if (path === TLS_RELAY_PATH) {
          handleUpgrade(req, socket, head)
          return
        }
        // The last upgrade listener answers for paths nobody serves (the map's listener
        // only does when it is alone), so such a request never hangs.
        const all = server.listeners('upgrade')
        if (all[all.length - 1] === listener && !otherPaths.includes(path ?? '')) {
          writeRawError(socket, 404, 'not_found', `no WebSocket endpoint at ${path}; the relay is at ${TLS_RELAY_PATH}${otherPaths.length > 0 ? ` (and this server also serves ${otherPaths.join(', ')})` : ''}`)
        }
      }
      server.on('upgrade', listener)
      return () => { server.off('upgrade', listener) }
    },
    meshChanged (ids) {
      generation++
      const check = ids === undefined ? [...byNode.values()] : [...ids].map(id => byNode.get(id))
      for (const nl of check) if (nl !== undefined) recheck(nl)
    },
    stats: () => ({ ...counts, links: byNode.size, dropped: { ...counts.dropped } }),
    async close () {
      if (closed) return
      closed = true
      clearInterval(idleSweep)
      for (const link of pending) link.close()
      for (const nl of [...byNode.values()]) cut(nl, 'shutting_down', 'the relay is shutting down; reconnect shortly')
      await new Promise<void>(resolve => wss.close(() => resolve()))
    }
  }
}
