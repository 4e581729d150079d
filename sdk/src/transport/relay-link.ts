import type { Duplex } from 'node:stream'
import WebSocket from 'ws'
import {
  createRelayFrameDecoder, encodeRelayControl, relayDataHeader, RELAY_DATA_HEADER, relayBatchHeader, RELAY_BATCH_HEADER,
  type RelayControlMessage, type RelayFrameHandler
} from '@warren/protocol'

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
}

/** RelayCarrier is what a link runs over: an upgraded TLS socket or a WebSocket. */
export type RelayCarrier = Duplex | WebSocket

const DEFAULT_HIGH_WATER = 2 * 1024 * 1024
/** SLAB_BYTES is the size of the buffers that frames are written into. */
const SLAB_BYTES = 256 * 1024
/** MIN_SLAB_REST is the least free room worth keeping a slab for the next turn. */
const MIN_SLAB_REST = 16 * 1024

/** createRelayLink speaks relay frames over a carrier that is already open. */
export function createRelayLink (carrier: RelayCarrier, handlers: RelayLinkHandlers, opts: RelayLinkOptions = {}): RelayLink {
  const highWater = opts.highWaterBytes ?? DEFAULT_HIGH_WATER
  const ws = carrier instanceof WebSocket ? carrier : undefined
  const stream = ws === undefined ? carrier as Duplex : undefined
  // Frames of one event-loop turn are written into a slab, then leave as one write. The
  // part of a slab that a write took is never touched again (the carrier may still hold
  // it); the rest of the slab serves the next turn.
  let slab = Buffer.allocUnsafe(SLAB_BYTES)
  let used = 0
  /** full slabs of this turn, in order, before the current one */
  let pieces: Buffer[] = []
  let queued = 0
  let scheduled = false
  let closed = false
  let closeReported = false

  const carrierBacklog = (): number => ws !== undefined ? ws.bufferedAmount : stream!.writableLength

  function flush (): void {
    scheduled = false
    if (used > 0) {
      pieces.push(slab.subarray(0, used))
      slab = slab.length - used >= MIN_SLAB_REST ? slab.subarray(used) : Buffer.allocUnsafe(SLAB_BYTES)
      used = 0
    }
    if (pieces.length === 0) return
    const out = pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces, queued)
    pieces = []
    queued = 0
    if (ws !== undefined) {
      if (ws.readyState === WebSocket.OPEN) ws.send(out, { binary: true })
    } else if (stream!.writable) {
      stream!.write(out)
    }
  }

  /** room makes sure the slab has `bytes` free and returns where they start. */
  function room (bytes: number): number {
    if (slab.length - used < bytes) {
      if (used > 0) pieces.push(slab.subarray(0, used))
      slab = Buffer.allocUnsafe(Math.max(SLAB_BYTES, bytes))
      used = 0
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
    slab.set(frame, room(frame.length))
  }

  const full = (): boolean => closed || queued + carrierBacklog() > highWater

  function reportClose (error?: Error): void {
    if (closeReported) return
    closeReported = true
    closed = true
    pieces = []
    queued = 0
    used = 0
    handlers.onClose(error)
  }

  let decodeError: Error | undefined
  const decoder = createRelayFrameDecoder(handlers.onFrame, opts.maxPacket !== undefined ? { maxPacket: opts.maxPacket } : {})
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
    stream!.on('data', (chunk: Buffer) => push(chunk))
    stream!.on('close', () => reportClose(decodeError))
    stream!.on('error', e => reportClose(e))
    stream!.on('end', () => { stream!.end() })
  }

  const link: RelayLink = {
    sendData (index, packet) {
      if (full()) return false
      const at = room(RELAY_DATA_HEADER + packet.length)
      relayDataHeader(index, packet.length, slab, at)
      slab.set(packet, at + RELAY_DATA_HEADER)
      return true
    },
    sendBatch (index, size, packets) {
      if (full()) return false
      const at = room(RELAY_BATCH_HEADER + packets.length)
      relayBatchHeader(index, size, packets.length, slab, at)
      slab.set(packets, at + RELAY_BATCH_HEADER)
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
