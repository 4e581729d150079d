import { createSocket, type Socket } from 'node:dgram'
import type WebSocket from 'ws'
import {
  negotiateVersion, RELAY_DOMAIN, TLS_RELAY_PATH, TLS_RELAY_UPGRADE, RelayFrameType, RelayServerMessage, RELAY_MAX_INDEX,
  relaySigningPayload, signMessage, readRelayIndex, forEachBatchPacket, decodeRelayControlText, encodeRelayPeer, encodeRelayFrame, parseJson,
  fromBase64, toBase64, WarrenError, type MachineKeyPair
} from '@warren/protocol'
import { createRelayLink, releaseBuffer, type RelayLink, type RelayCarrier, type ControllerTransport } from '@warren/sdk/transport'
import { createBackoff, type BackoffInit } from '../control/backoff.js'
import type { TlsRelayClient } from './types.js'
import { enableUdpOffload, wireGuardSegmentSize, splitPackets, createSegmentBatcher, WIREGUARD_OVERHEAD, type SegmentBatcher } from './udp-offload.js'

/** TlsRelayCarrier picks how the connection is carried: the framed stream, a WebSocket, or the stream first then WebSocket. */
export type TlsRelayCarrier = 'auto' | 'stream' | 'websocket'

export interface TlsRelayClientLogger {
  info: (obj: object, msg?: string) => void
  warn: (obj: object, msg?: string) => void
  debug: (obj: object, msg?: string) => void
}

/** TlsRelayTransport is how the client reaches its relay: a pinned transport to the relay's HTTPS URL. */
export type TlsRelayTransport = Pick<ControllerTransport, 'upgrade' | 'webSocket'>

export interface TlsRelayClientInit {
  /** the transport to the relay (pinned like the map session's): the controller's for its embedded relay */
  transport: TlsRelayTransport
  /** the node's machine key, which the relay checks as the map does */
  machineKey: MachineKeyPair
  /** WireGuard's UDP listen port on this host: relayed packets go to 127.0.0.1:wgPort */
  wgPort: number
  /** 'auto' (default) tries the framed stream and falls back to WebSocket, for proxies that pass nothing else */
  carrier?: TlsRelayCarrier
  backoff?: BackoffInit
  /** PING interval; a connection silent for 3 of them is dropped (default 15 s) */
  keepaliveMs?: number
  /** SO_RCVBUF and SO_SNDBUF of each loopback socket (default 4 MiB; the kernel caps it at net.core.rmem_max / wmem_max) */
  socketBufferBytes?: number
  /** packets from WireGuard are dropped while more than this waits to go out (default 2 MiB) */
  highWaterBytes?: number
  /**
   * the mesh interface's MTU (default 1420): the loopback sockets hand WireGuard runs of
   * full-sized packets (MTU + 32 bytes) in one send with UDP segmentation offload
   */
  mtu?: number
  /** false keeps one datagram per packet on the loopback sockets (default: offload when the kernel takes it) */
  offload?: boolean
  /** onUnknownPeer hears of a peer that sent through the relay with no loopback endpoint open here (once per connection) */
  onUnknownPeer?: (peerWgKey: string) => void
  /** onState hears when the relay connection comes up (true) or goes down (false) */
  onState?: (connected: boolean) => void
  logger?: TlsRelayClientLogger
}

/** TlsRelayClientStats counts what went through the client. */
export interface TlsRelayClientStats {
  connects: number
  /** packets from WireGuard sent to the relay, and dropped (not connected, or back-pressure) */
  sent: number
  sendDropped: number
  /** packets from the relay handed to WireGuard, and dropped (no endpoint for the peer) */
  received: number
  receiveDropped: number
  /** the carrier of the current connection */
  carrier?: 'stream' | 'websocket'
  /** SO_RCVBUF the kernel granted the loopback sockets (bytes; Linux reports twice what it keeps for bookkeeping) */
  recvBufferBytes?: number
  /** whether the last loopback socket opened took segmentation offload (send) and receive coalescing */
  offload?: { gso: boolean, gro: boolean }
  /** sends to WireGuard (one per run of packets with offload) */
  loopbackSends: number
  /** packets from the relay larger than MTU + 32 that the offloaded socket could not pass */
  oversize: number
}

interface PeerEnd {
  wgKey: string
  keyBytes: Uint8Array
  index: number
  socket: Socket
  endpoint: string
  /** whether this connection has heard the PEER frame for index */
  announced: boolean
  /** set when the socket sends runs of packets with UDP_SEGMENT */
  batcher?: SegmentBatcher
  /** whether a receive may hold several of WireGuard's packets (UDP_GRO) */
  gro: boolean
  /** the packet size last found in a coalesced receive */
  groSize: number
}

/** TlsRelayClientControl is what the client's owner may do besides what path selection uses. */
export interface TlsRelayClientControl {
  stats: () => TlsRelayClientStats
  /**
   * retarget moves the connection to another relay at once: the loopback endpoints stay
   * (WireGuard's endpoints do not move), and the peers are named to the new relay
   */
  retarget: (transport: TlsRelayTransport) => void
}

/**
 * createTlsRelayClient keeps one outbound TLS connection to the relay and gives WireGuard
 * a loopback UDP endpoint per relayed peer: what WireGuard sends to 127.0.0.1:PORT goes to
 * the relay as DATA frames for that peer, and what the relay delivers from the peer leaves
 * that socket for WireGuard's port, so WireGuard sees the peer at 127.0.0.1:PORT. Each
 * socket is connected to WireGuard's port, so the kernel drops anything else sent to it,
 * and binds only 127.0.0.1. The connection reconnects with jittered backoff; endpoints
 * stay open across reconnects, and WireGuard's own retransmits carry the session over.
 */
export function createTlsRelayClient (init: TlsRelayClientInit): TlsRelayClient & TlsRelayClientControl {
  const backoff = createBackoff(init.backoff)
  const keepaliveMs = init.keepaliveMs ?? 15_000
  const bufferBytes = init.socketBufferBytes ?? 4 * 1024 * 1024
  const log = init.logger
  const peers = new Map<string, PeerEnd>()
  const opening = new Map<string, Promise<string>>()
  const freeIndexes: number[] = []
  let nextIndex = 0
  /** inbound maps the relay's indexes on this connection to peers' keys */
  const inbound = new Map<number, string>()
  const unknownHeard = new Set<string>()
  const stateHandlers = new Set<(connected: boolean) => void>()
  const setState = (up: boolean): void => {
    init.onState?.(up)
    for (const h of stateHandlers) h(up)
  }
  const segmentBytes = (init.mtu ?? 1420) + WIREGUARD_OVERHEAD
  const stats: TlsRelayClientStats = { connects: 0, sent: 0, sendDropped: 0, received: 0, receiveDropped: 0, loopbackSends: 0, oversize: 0 }
  /** peers with packets gathered in this read of the relay connection */
  const unflushed = new Set<PeerEnd>()
  let flushQueued = false
  const flushRuns = (): void => {
    flushQueued = false
    for (const p of unflushed) p.batcher?.flush()
    unflushed.clear()
  }
  let link: RelayLink | undefined
  let welcomed = false
  /** the relay of this connection takes BATCH frames */
  let relayTakesBatches = false
  let useWebSocket = init.carrier === 'websocket'
  let transport = init.transport
  /** bumped by retarget: a connection opened for an older target is dropped */
  let target = 0
  let connecting = false
  let reconnectTimer: NodeJS.Timeout | undefined
  let keepaliveTimer: NodeJS.Timeout | undefined
  let closed = false

  function announce (p: PeerEnd): void {
    if (link === undefined || !welcomed || p.announced) return
    p.announced = link.sendFrame(encodeRelayPeer(p.index, p.keyBytes))
  }

  function onControl (l: RelayLink, body: Uint8Array): void {
    let msg: RelayServerMessage
    try {
      msg = parseJson(RelayServerMessage, decodeRelayControlText(body), 'relay message')
    } catch (e) {
      l.close({ code: 'invalid_input', message: (e as Error).message })
      return
    }
    if (msg.type === 'challenge') {
      const version = negotiateVersion(msg.version)
      const sig = signMessage(init.machineKey.secretKey, RELAY_DOMAIN, relaySigningPayload(msg.nonce, init.machineKey.publicKey, version))
      l.sendControl({ type: 'hello', version, machineKey: init.machineKey.publicKey, nonce: msg.nonce, signature: sig, batch: true })
    } else if (msg.type === 'welcome') {
      welcomed = true
      relayTakesBatches = msg.batch === true
      backoff.reset()
      stats.connects++
      log?.info({ carrier: stats.carrier, peers: peers.size }, 'TLS relay connected')
      for (const p of peers.values()) announce(p)
      setState(true)
    } else {
      log?.warn({ code: msg.code, message: msg.message }, 'TLS relay refused or ended the connection')
    }
  }

  /** onData hands WireGuard the packet of a DATA frame, or the packets of a BATCH frame when `batch`. */
  function onData (body: Uint8Array, batch: boolean): void {
    const key = inbound.get(readRelayIndex(body))
    const p = key === undefined ? undefined : peers.get(key)
    if (p === undefined) {
      stats.receiveDropped++
      if (key !== undefined && !unknownHeard.has(key)) {
        unknownHeard.add(key)
        init.onUnknownPeer?.(key)
      }
      return
    }
    if (batch) forEachBatchPacket(body, packet => deliver(p, packet))
    else deliver(p, body.subarray(2))
  }

  function deliver (p: PeerEnd, packet: Uint8Array): void {
    stats.received++
    if (p.batcher === undefined) {
      stats.loopbackSends++
      // A copy: the packet is a view into the read, which the link frees once onFrame returns.
      // No callback: a send callback costs a nextTick per packet; errors (WireGuard down) go to the socket's 'error' listener.
      p.socket.send(Buffer.from(packet))
      return
    }
    // The batcher copies the packet; the run goes out when this read is done.
    if (!p.batcher.add(packet)) {
      stats.oversize++
      stats.receiveDropped++
      return
    }
    unflushed.add(p)
    if (!flushQueued) {
      flushQueued = true
      queueMicrotask(flushRuns)
    }
  }

  /** attach speaks the relay protocol over a carrier that just opened. */
  function attach (carrier: RelayCarrier, kind: 'stream' | 'websocket'): void {
    let lastHeard = Date.now()
    const l: RelayLink = createRelayLink(carrier, {
      onFrame (type, body) {
        lastHeard = Date.now()
        if (type === RelayFrameType.Data) onData(body, false)
        else if (type === RelayFrameType.Batch) onData(body, true)
        else if (type === RelayFrameType.Peer) inbound.set(readRelayIndex(body), toBase64(body.subarray(2)))
        else if (type === RelayFrameType.Control) onControl(l, body)
      },
      onClose: err => { if (link === l) lost(err) }
    }, { framesCopied: true, ...(init.highWaterBytes !== undefined ? { highWaterBytes: init.highWaterBytes } : {}) })
    link = l
    welcomed = false
    stats.carrier = kind
    keepaliveTimer = setInterval(() => {
      if (Date.now() - lastHeard > 3 * keepaliveMs) {
        l.close({ code: 'timeout', message: `relay silent for ${Date.now() - lastHeard} ms` })
        return
      }
      l.sendFrame(encodeRelayFrame(RelayFrameType.Ping, new Uint8Array(8)))
    }, keepaliveMs)
    keepaliveTimer.unref()
  }

  /** detach forgets the connection; returns whether it was up */
  function detach (): boolean {
    clearInterval(keepaliveTimer)
    const wasUp = welcomed
    link = undefined
    welcomed = false
    inbound.clear()
    unknownHeard.clear()
    for (const p of peers.values()) p.announced = false
    if (wasUp) setState(false)
    return wasUp
  }

  function lost (why?: Error): void {
    const wasUp = detach()
    if (closed) return
    // A connection that never got its welcome may be a proxy that passes only WebSocket.
    if (!wasUp && init.carrier !== 'stream' && init.carrier !== 'websocket') useWebSocket = !useWebSocket
    log?.debug({ err: why?.message }, 'TLS relay connection lost')
    scheduleReconnect()
  }

  async function openCarrier (): Promise<{ carrier: RelayCarrier, kind: 'stream' | 'websocket' }> {
    if (!useWebSocket) return { carrier: await transport.upgrade(TLS_RELAY_PATH, TLS_RELAY_UPGRADE), kind: 'stream' }
    // Relative on purpose: it resolves under the controller URL whether or not its path ends in '/'.
    // Not awaited: the challenge may arrive in the same read as the 101, so the link must
    // listen before 'open'; a failed handshake closes the link like a lost connection.
    const ws: WebSocket = transport.webSocket(TLS_RELAY_PATH.slice(1))
    return { carrier: ws, kind: 'websocket' }
  }

  function connect (): void {
    if (closed) return
    connecting = true
    const gen = target
    openCarrier().then(({ carrier, kind }) => {
      connecting = false
      if (closed || gen !== target) {
        if ('terminate' in carrier) carrier.terminate()
        else carrier.destroy()
        connect()
        return
      }
      attach(carrier, kind)
    }, (e: Error) => {
      connecting = false
      if (gen !== target) {
        connect()
        return
      }
      log?.debug({ err: e.message }, 'cannot open the TLS relay connection')
      lost(e)
    })
  }

  function scheduleReconnect (): void {
    if (closed || reconnectTimer !== undefined) return
    const delay = backoff.next()
    reconnectTimer = setTimeout(() => {
      reconnectTimer = undefined
      connect()
    }, delay)
  }

  async function open (wgKey: string, keyBytes: Uint8Array): Promise<string> {
    if (freeIndexes.length === 0 && nextIndex > RELAY_MAX_INDEX) throw new WarrenError('too_many_peers', `the TLS relay client holds at most ${RELAY_MAX_INDEX + 1} peers`)
    const socket = createSocket({ type: 'udp4' })
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject)
      socket.bind(0, '127.0.0.1', () => { socket.off('error', reject); resolve() })
    })
    // Connected to WireGuard's port: the kernel drops datagrams from anyone else.
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject)
      socket.connect(init.wgPort, '127.0.0.1', () => { socket.off('error', reject); resolve() })
    })
    socket.on('error', e => log?.debug({ err: e.message }, 'loopback relay socket error'))
    try {
      socket.setRecvBufferSize(bufferBytes)
      socket.setSendBufferSize(bufferBytes)
    } catch (e) {
      log?.warn({ err: (e as Error).message }, 'cannot size the loopback relay socket buffers')
    }
    stats.recvBufferBytes = socket.getRecvBufferSize()
    const index = freeIndexes.pop() ?? nextIndex++
    const p: PeerEnd = { wgKey, keyBytes, index, socket, endpoint: `127.0.0.1:${socket.address().port}`, announced: false, gro: false, groSize: 0 }
    if (init.offload !== false) {
      try {
        const o = await enableUdpOffload(socket, { segmentBytes, gro: true })
        p.gro = o.gro
        p.batcher = createSegmentBatcher((run, done) => {
          stats.loopbackSends++
          // The callback runs once the kernel has the run (at once, or after a wait for room).
          socket.send(run, err => {
            done()
            if (err !== null) log?.debug({ err: err.message }, 'loopback relay socket error')
          })
        }, segmentBytes)
      } catch (e) {
        log?.debug({ err: (e as Error).message }, 'no UDP offload on the loopback relay socket; one datagram per packet')
      }
      stats.offload = { gso: p.batcher !== undefined, gro: p.gro }
    }
    const forward = (packet: Uint8Array): void => {
      if (link!.sendData(p.index, packet)) stats.sent++
      else stats.sendDropped++
    }
    /** fromWireGuard sends what WireGuard sent to the relay; the link copies it, so the caller may release it */
    const fromWireGuard = (msg: Buffer): void => {
      if (link === undefined || !welcomed || !p.announced) {
        stats.sendDropped++
        return
      }
      if (!p.gro) {
        forward(msg)
        return
      }
      const size = wireGuardSegmentSize(msg, p.groSize)
      if (size === 0) {
        forward(msg)
        return
      }
      p.groSize = size
      if (!relayTakesBatches) splitPackets(msg, size, forward)
      else if (link.sendBatch(p.index, size, msg)) stats.sent += Math.ceil(msg.length / size)
      else stats.sendDropped += Math.ceil(msg.length / size)
    }
    socket.on('message', (msg: Buffer) => {
      fromWireGuard(msg)
      releaseBuffer(msg)
    })
    peers.set(wgKey, p)
    unknownHeard.delete(wgKey)
    announce(p)
    return p.endpoint
  }

  // Connected from the start, like a home relay: a peer that can only reach us through
  // the relay must find us there before we ever need it ourselves (onUnknownPeer).
  connect()

  return {
    async endpoint (peerWgKey) {
      if (closed) throw new WarrenError('closed', 'the TLS relay client is closed')
      const have = peers.get(peerWgKey)
      if (have !== undefined) return have.endpoint
      const keyBytes = fromBase64(peerWgKey, 32)
      if (keyBytes === null) throw new WarrenError('bad_key', `peer key '${peerWgKey.slice(0, 60)}' is not a 32-byte WireGuard public key in base64`, { field: 'peerWgKey' })
      let p = opening.get(peerWgKey)
      if (p === undefined) {
        p = open(peerWgKey, keyBytes).finally(() => opening.delete(peerWgKey))
        opening.set(peerWgKey, p)
      }
      return await p
    },
    release (peerWgKey) {
      const p = peers.get(peerWgKey)
      if (p === undefined) return
      peers.delete(peerWgKey)
      unflushed.delete(p)
      p.socket.close()
      freeIndexes.push(p.index)
    },
    connected: () => link !== undefined && welcomed,
    onStateChange (h) {
      stateHandlers.add(h)
      return () => { stateHandlers.delete(h) }
    },
    stats: () => ({ ...stats }),
    retarget (t) {
      transport = t
      target++
      backoff.reset()
      useWebSocket = init.carrier === 'websocket'
      clearTimeout(reconnectTimer)
      reconnectTimer = undefined
      const l = link
      if (l !== undefined) {
        detach()
        l.close({ code: 'relay_moved', message: 'this node moves to another TLS relay' })
      }
      if (!connecting) connect()
    },
    async close () {
      if (closed) return
      closed = true
      clearTimeout(reconnectTimer)
      clearInterval(keepaliveTimer)
      link?.close()
      stateHandlers.clear()
      await Promise.allSettled([...opening.values()])
      for (const key of [...peers.keys()]) this.release(key)
    }
  }
}
