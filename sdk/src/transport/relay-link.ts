import type { Duplex } from 'node:stream'
import WebSocket from 'ws'
import {
  createRelayFrameDecoder, encodeRelayControl, relayDataHeader, RELAY_DATA_HEADER, relayBatchHeader, RELAY_BATCH_HEADER,
  type RelayControlMessage, type RelayFrameHandler
} from '@warren/protocol'
import { releaseBuffer } from './release-buffer.js'

/**
 * RelayLink is one end of a TLS relay connection, the same on the relay and on a node:
 * frames in, frames out, over either carrier (the upgraded byte stream or a WebSocket
 * whose binary messages hold frames). What is sent in one event-loop turn leaves as one
 * write, so a burst of small WireGuard packets costs one TLS write, not one each.
 * Nothing queues without bound: a link that holds more than `highWaterBytes` unsent
 * refuses further frames, which the caller drops (WireGuard packets are datagrams, and
 * the TCP inside them slows down on loss).
 */
export interface RelayLink {
  /** sendData queues one WireGuard packet for peer `index`; false when dropped for back-pressure */
  sendData: (index: number, packet: Uint8Array) => boolean
  /** sendBatch queues packets for peer `index` of `size` bytes each but the last, back to back in `packets`, as one BATCH frame */
  sendBatch: (index: number, size: number, packets: Uint8Array) => boolean
  /** sendFrame queues a whole encoded frame (PEER, CONTROL, PING); false when dropped for back-pressure */
  sendFrame: (frame: Uint8Array) => boolean
  /** sendControl queues a control message; control messages are never dropped */
  sendControl: (msg: RelayControlMessage) => void
  /** backlog is how many bytes wait: queued this turn plus unsent in the carrier */
  backlog: () => number
  /** close flushes what is queued (an error message first when given) and ends the carrier */
  close: (error?: { code: string, message: string }) => void
  readonly closed: boolean
}

export interface RelayLinkHandlers {
  onFrame: RelayFrameHandler
  /** onClose runs once, when the carrier is gone; `error` says why when the link broke */
  onClose: (error?: Error) => void
}

export interface RelayLinkOptions {
  /** frames are refused while more than this many bytes wait (default 2 MiB) */
  highWaterBytes?: number
  /** the largest WireGuard packet a DATA frame may carry in (default the frame limit) */
  maxPacket?: number
  /**
   * onFrame copies what it keeps of a body before it returns, so the decoder may assemble
   * split frames in one reused buffer (see RelayFrameDecoderOptions.reuse)
   */
  framesCopied?: boolean
}

/** RelayCarrier is what a link runs over: an upgraded TLS socket or a WebSocket. */
export type RelayCarrier = Duplex | WebSocket

const DEFAULT_HIGH_WATER = 2 * 1024 * 1024
/** SLAB_BYTES is the size of the buffers that frames are written into. */
const SLAB_BYTES = 256 * 1024
/** MIN_SLAB_REST is the least free room worth keeping a slab for the next turn. */
const MIN_SLAB_REST = 16 * 1024
/** MAX_FREE_SLABS bounds the pool that all links share (8 MiB). */
const MAX_FREE_SLABS = 32

interface Slab {
  buf: Buffer
  /** writes of parts of this slab that the carrier has not finished */
  writes: number
  /** no more frames go into this slab */
  full: boolean
}

interface Piece { slab: Slab, from: number, to: number }

const freeSlabs: Buffer[] = []

function takeSlab (min: number): Slab {
  const buf = min <= SLAB_BYTES ? freeSlabs.pop() ?? Buffer.allocUnsafe(SLAB_BYTES) : Buffer.allocUnsafe(min)
  return { buf, writes: 0, full: false }
}

/** releaseSlab returns a slab to the pool once it is full and every write of it is done. */
function releaseSlab (s: Slab): void {
  if (!s.full || s.writes > 0 || s.buf.length !== SLAB_BYTES || freeSlabs.length >= MAX_FREE_SLABS) return
  s.full = false // never released twice
  freeSlabs.push(s.buf)
}

/** createRelayLink speaks relay frames over a carrier that is already open. */
export function createRelayLink (carrier: RelayCarrier, handlers: RelayLinkHandlers, opts: RelayLinkOptions = {}): RelayLink {
  const highWater = opts.highWaterBytes ?? DEFAULT_HIGH_WATER
  const ws = carrier instanceof WebSocket ? carrier : undefined
  const stream = ws === undefined ? carrier as Duplex : undefined
  // Frames of one event-loop turn are written into a slab, then leave as one write. The
  // part of a slab that a write took is never touched again until the carrier is done
  // with it; the rest of the slab serves the next turns, and a slab whose writes have
  // all completed goes back to a shared pool, so steady traffic allocates nothing.
  let cur = takeSlab(0)
  /** where this turn's frames begin in the current slab, and where the next one goes */
  let start = 0
  let used = 0
  /** parts of slabs that this turn filled, in order, not yet written */
  let pieces: Piece[] = []
  let queued = 0
  let scheduled = false
  let closed = false
  let closeReported = false

  const carrierBacklog = (): number => ws !== undefined ? ws.bufferedAmount : stream!.writableLength

  function endPiece (): void {
    if (used > start) {
      // Counted as a write from now on: a slab with a piece waiting is not given back.
      cur.writes++
      pieces.push({ slab: cur, from: start, to: used })
    }
    start = used
  }

  function nextSlab (min: number): void {
    cur.full = true
    releaseSlab(cur)
    cur = takeSlab(min)
    start = 0
    used = 0
  }

  function flush (): void {
    scheduled = false
    endPiece()
    if (cur.buf.length - used < MIN_SLAB_REST) nextSlab(0)
    if (pieces.length === 0) return
    const list = pieces
    pieces = []
    queued = 0
    // Pieces not written keep their slabs out of the pool; the garbage collector takes them.
    const canWrite = ws !== undefined ? ws.readyState === WebSocket.OPEN : stream!.writable
    if (!canWrite) return
    if (list.length > 1) stream?.cork()
    for (const p of list) {
      const done = (): void => {
        p.slab.writes--
        releaseSlab(p.slab)
      }
      const bytes = p.slab.buf.subarray(p.from, p.to)
      // Each piece ends at a frame boundary, so on WebSocket each is a message of whole frames.
      if (ws !== undefined) ws.send(bytes, { binary: true }, done)
      else stream!.write(bytes, done)
    }
    if (list.length > 1) stream?.uncork()
  }

  /** room makes sure the slab has `bytes` free and returns where they start. */
  function room (bytes: number): number {
    if (cur.buf.length - used < bytes) {
      endPiece()
      nextSlab(bytes)
    }
    const at = used
    used += bytes
    queued += bytes
    if (!scheduled) {
      scheduled = true
      setImmediate(flush)
    }
    return at
  }

  function queue (frame: Uint8Array): void {
    const at = room(frame.length)
    cur.buf.set(frame, at)
  }

  const full = (): boolean => closed || queued + carrierBacklog() > highWater

  function reportClose (error?: Error): void {
    if (closeReported) return
    closeReported = true
    closed = true
    pieces = []
    queued = 0
    start = used = 0
    handlers.onClose(error)
  }

  let decodeError: Error | undefined
  const decoder = createRelayFrameDecoder(handlers.onFrame, { ...(opts.maxPacket !== undefined ? { maxPacket: opts.maxPacket } : {}), reuse: opts.framesCopied === true })
  const push = (chunk: Uint8Array): void => {
    if (closed) return
    try {
      decoder.push(chunk)
    } catch (e) {
      decodeError = e as Error
      link.close({ code: (e as { code?: string }).code ?? 'bad_relay_frame', message: (e as Error).message })
    }
  }

  if (ws !== undefined) {
    ws.binaryType = 'nodebuffer'
    ws.on('message', (data: WebSocket.RawData, isBinary: boolean) => {
      if (!isBinary) {
        link.close({ code: 'bad_relay_frame', message: 'relay WebSocket messages are binary frames, not text' })
        return
      }
      if (Array.isArray(data)) for (const d of data) push(d)
      else push(data instanceof ArrayBuffer ? new Uint8Array(data) : data)
    })
    ws.on('close', () => reportClose(decodeError))
    ws.on('error', e => reportClose(e))
  } else {
    stream!.on('data', (chunk: Buffer) => {
      push(chunk)
      // Nothing keeps a view of the chunk when onFrame copies (the decoder copies split frames).
      if (opts.framesCopied === true) releaseBuffer(chunk)
    })
    stream!.on('close', () => reportClose(decodeError))
    stream!.on('error', e => reportClose(e))
    stream!.on('end', () => { stream!.end() })
  }

  const link: RelayLink = {
    sendData (index, packet) {
      if (full()) return false
      const at = room(RELAY_DATA_HEADER + packet.length)
      relayDataHeader(index, packet.length, cur.buf, at)
      cur.buf.set(packet, at + RELAY_DATA_HEADER)
      return true
    },
    sendBatch (index, size, packets) {
      if (full()) return false
      const at = room(RELAY_BATCH_HEADER + packets.length)
      relayBatchHeader(index, size, packets.length, cur.buf, at)
      cur.buf.set(packets, at + RELAY_BATCH_HEADER)
      return true
    },
    sendFrame (frame) {
      if (full()) return false
      queue(frame)
      return true
    },
    sendControl (msg) {
      if (!closed) queue(encodeRelayControl(msg))
    },
    backlog: () => queued + carrierBacklog(),
    close (error) {
      if (closed) return
      if (error !== undefined) queue(encodeRelayControl({ type: 'error', code: error.code, message: error.message }))
      flush()
      closed = true
      if (ws !== undefined) {
        ws.close(error === undefined ? 1000 : 4400, error?.code.slice(0, 100))
        setTimeout(() => ws.terminate(), 2000).unref()
      } else {
        stream!.end()
        setTimeout(() => stream!.destroy(), 2000).unref()
      }
    },
    get closed () { return closed }
  }
  return link
}
