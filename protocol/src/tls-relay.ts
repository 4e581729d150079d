import { Type, type Static } from '@sinclair/typebox'
import { Obj, Id, MapChallenge, MapHello } from './messages.js'
import { WarrenError } from './errors.js'

/**
 * The TLS relay carries WireGuard packets between two nodes over each node's one outbound
 * TLS connection to the relay (the controller's HTTPS port), for when UDP is blocked.
 * A node opens it with `GET TLS_RELAY_PATH` and `Upgrade: TLS_RELAY_UPGRADE` (a plain
 * byte stream after `101 Switching Protocols`), or, through proxies that only pass
 * WebSocket, with a WebSocket upgrade on the same path whose binary messages carry the
 * same bytes. Either way the stream is a sequence of frames:
 *
 *     frame = type:u8  length:u16be  body[length]
 *
 * - DATA    body = index:u16be, then one WireGuard packet (never empty)
 * - BATCH   body = index:u16be, size:u16be, then packets for that peer back to back, each
 *           `size` bytes but the last, which may be shorter: the packets WireGuard sent
 *           to one endpoint in one go (UDP segmentation offload), carried as one frame.
 *           Only sent to a side whose hello or welcome said `batch: true`; the relay
 *           splits a BATCH into DATA frames for a node that did not.
 * - PEER    body = index:u16be, then a WireGuard public key (32 bytes): the sender
 *           says which peer `index` stands for in its DATA frames from now on. Each
 *           direction has its own indexes, chosen by the side that sends the DATA.
 * - CONTROL body = one JSON message (challenge, hello, welcome, error)
 * - PING / PONG body = up to 64 opaque bytes, echoed
 *
 * The relay speaks first with a challenge; the node answers with a hello signed by its
 * machine key (the map session's scheme, in its own domain); the relay says welcome or
 * error. Only then do DATA and PEER frames flow.
 */

/** TLS_RELAY_PATH is where nodes open the TLS relay on the controller's API server. */
export const TLS_RELAY_PATH = '/v1/relay'
/** TLS_RELAY_UPGRADE is the Upgrade token of the framed byte stream. */
export const TLS_RELAY_UPGRADE = 'warren-relay/1'
/** RELAY_DOMAIN separates relay hello signatures from every other signature of the machine key. */
export const RELAY_DOMAIN = 'warren-relay-v1'

/** RelayFrameType numbers the frame types. */
export const RelayFrameType = { Data: 1, Peer: 2, Control: 3, Ping: 4, Pong: 5, Batch: 6 } as const
export type RelayFrameType = typeof RelayFrameType[keyof typeof RelayFrameType]

/** RELAY_FRAME_HEADER is type plus length. */
export const RELAY_FRAME_HEADER = 3
/** RELAY_DATA_HEADER is a DATA frame's header plus its peer index. */
export const RELAY_DATA_HEADER = 5
/** RELAY_BATCH_HEADER is a BATCH frame's header, peer index and packet size. */
export const RELAY_BATCH_HEADER = 7
/** RELAY_MAX_BODY is the largest body the u16 length can say. */
export const RELAY_MAX_BODY = 0xffff
/** RELAY_MAX_PACKET is the largest WireGuard packet a DATA frame can hold. */
export const RELAY_MAX_PACKET = RELAY_MAX_BODY - 2
/** RELAY_MAX_INDEX is the largest peer index. */
export const RELAY_MAX_INDEX = 0xffff
const MAX_CONTROL_BODY = 4096
const MAX_PING_BODY = 64

/** RelayFrameError (code bad_relay_frame) is a stream that breaks the frame rules; the connection must end. */
export class RelayFrameError extends WarrenError {
  constructor (message: string) {
    super('bad_relay_frame', message, { status: 400 })
  }
}

/** writePacketsHead writes a frame's type, body length and peer index: the head DATA and BATCH frames share. */
function writePacketsHead (type: RelayFrameType, bodyLength: number, index: number, out: Uint8Array, at: number): void {
  out[at] = type
  out[at + 1] = bodyLength >>> 8
  out[at + 2] = bodyLength & 0xff
  out[at + 3] = index >>> 8
  out[at + 4] = index & 0xff
}

/** relayDataHeader is the 5 bytes that go before a packet of `length` bytes for peer `index`. */
export function relayDataHeader (index: number, length: number, out: Uint8Array = new Uint8Array(RELAY_DATA_HEADER), at = 0): Uint8Array {
  if (length < 1 || length > RELAY_MAX_PACKET) throw new RelayFrameError(`a relayed packet must be 1..${RELAY_MAX_PACKET} bytes, not ${length}`)
  writePacketsHead(RelayFrameType.Data, length + 2, index, out, at)
  return out
}

/** relayBatchHeader is the 7 bytes that go before `length` bytes of packets of `size` bytes (the last may be shorter) for peer `index`. */
export function relayBatchHeader (index: number, size: number, length: number, out: Uint8Array = new Uint8Array(RELAY_BATCH_HEADER), at = 0): Uint8Array {
  if (length < 1 || length > RELAY_MAX_BODY - 4) throw new RelayFrameError(`a relayed batch must be 1..${RELAY_MAX_BODY - 4} bytes, not ${length}`)
  if (size < 1 || size > length) throw new RelayFrameError(`a relayed batch's packet size must be 1..${length} (the batch length), not ${size}`)
  writePacketsHead(RelayFrameType.Batch, length + 4, index, out, at)
  out[at + 5] = size >>> 8
  out[at + 6] = size & 0xff
  return out
}

/** readRelayBatchSize is the packet size of a BATCH body. */
export function readRelayBatchSize (body: Uint8Array): number {
  return (body[2]! << 8) | body[3]!
}

/** forEachBatchPacket calls onPacket with each packet of a BATCH body (views into it). */
export function forEachBatchPacket (body: Uint8Array, onPacket: (packet: Uint8Array) => void): void {
  const size = readRelayBatchSize(body)
  for (let at = 4; at < body.length; at += size) onPacket(body.subarray(at, Math.min(at + size, body.length)))
}

/** encodeRelayData is one whole DATA frame (a copy of the packet; hot paths write relayDataHeader then the packet). */
export function encodeRelayData (index: number, packet: Uint8Array): Uint8Array {
  const out = new Uint8Array(RELAY_DATA_HEADER + packet.length)
  relayDataHeader(index, packet.length, out)
  out.set(packet, RELAY_DATA_HEADER)
  return out
}

/** encodeRelayPeer is a PEER frame: `index` stands for the 32-byte WireGuard key from now on. */
export function encodeRelayPeer (index: number, wgKey: Uint8Array): Uint8Array {
  if (wgKey.length !== 32) throw new RelayFrameError(`a PEER frame names a 32-byte WireGuard key, not ${wgKey.length} bytes`)
  if (!Number.isInteger(index) || index < 0 || index > RELAY_MAX_INDEX) throw new RelayFrameError(`peer index ${index} is outside 0..${RELAY_MAX_INDEX}`)
  return encodeRelayFrame(RelayFrameType.Peer, Uint8Array.of(index >>> 8, index & 0xff, ...wgKey))
}

/** encodeRelayFrame frames a body of any type. */
export function encodeRelayFrame (type: RelayFrameType, body: Uint8Array): Uint8Array {
  if (body.length > RELAY_MAX_BODY) throw new RelayFrameError(`a relay frame body must be at most ${RELAY_MAX_BODY} bytes, not ${body.length}`)
  const out = new Uint8Array(RELAY_FRAME_HEADER + body.length)
  out[0] = type
  out[1] = body.length >>> 8
  out[2] = body.length & 0xff
  out.set(body, RELAY_FRAME_HEADER)
  return out
}

/** encodeRelayControl frames one control message as JSON. */
export function encodeRelayControl (msg: RelayControlMessage): Uint8Array {
  return encodeRelayFrame(RelayFrameType.Control, new TextEncoder().encode(JSON.stringify(msg)))
}

/** RelayFrameHandler gets each whole frame; `body` may be a view into the pushed chunk, valid only during the call. */
export type RelayFrameHandler = (type: RelayFrameType, body: Uint8Array) => void

/** RelayFrameDecoder turns a byte stream, pushed in chunks of any size, into frames. */
export interface RelayFrameDecoder {
  /** push hands over the next bytes; it throws RelayFrameError on a frame that breaks the rules */
  push: (chunk: Uint8Array) => void
  /** buffered is how many bytes of an unfinished frame are held */
  buffered: () => number
}

/** RelayFrameDecoderOptions tune a decoder. */
export interface RelayFrameDecoderOptions {
  /** refuse DATA frames, and BATCH frames of packets, larger than this before their body arrives */
  maxPacket?: number
  /**
   * reuse assembles frames split across chunks in one buffer, kept while frames keep
   * arriving split and dropped once a push ends on a frame boundary, instead of a new
   * buffer per frame. A body is then valid only during onFrame: for handlers that copy
   * what they keep (a relay forwarding into its own write buffers). Busy links split most
   * frames (a TLS read is at most one 16 KiB record), so this halves what such a handler
   * allocates, and with it the garbage collector's work.
   */
  reuse?: boolean
}

/**
 * createRelayFrameDecoder reads frames from chunks of a stream. Frames that lie whole in
 * a chunk are handed over as views into it (no copy); only a frame split across chunks is
 * assembled, in a buffer of exactly its size (or the reused one), so a peer that sends half
 * a frame holds at most one frame of memory.
 */
export function createRelayFrameDecoder (onFrame: RelayFrameHandler, opts: RelayFrameDecoderOptions = {}): RelayFrameDecoder {
  const maxPacket = opts.maxPacket ?? RELAY_MAX_PACKET
  let scratch: Uint8Array | undefined
  const head = new Uint8Array(RELAY_FRAME_HEADER)
  let headHave = 0
  let body: Uint8Array | undefined
  let bodyHave = 0

  function check (type: number, length: number): void {
    switch (type) {
      case RelayFrameType.Data:
        if (length < 3) throw new RelayFrameError(`DATA frame of ${length} bytes holds no packet (a DATA body is a 2-byte peer index then the packet)`)
        if (length - 2 > maxPacket) throw new RelayFrameError(`DATA frame carries a ${length - 2}-byte packet; this relay takes at most ${maxPacket} bytes (lower the WireGuard MTU)`)
        return
      case RelayFrameType.Batch: {
        if (length < 5) throw new RelayFrameError(`BATCH frame of ${length} bytes holds no packet (a BATCH body is a 2-byte peer index, a 2-byte packet size, then the packets)`)
        return
      }
      case RelayFrameType.Peer:
        if (length !== 34) throw new RelayFrameError(`PEER frame must be 34 bytes (index and a 32-byte WireGuard key), not ${length}`)
        return
      case RelayFrameType.Control:
        if (length < 2 || length > MAX_CONTROL_BODY) throw new RelayFrameError(`CONTROL frame must be 2..${MAX_CONTROL_BODY} bytes of JSON, not ${length}`)
        return
      case RelayFrameType.Ping:
      case RelayFrameType.Pong:
        if (length > MAX_PING_BODY) throw new RelayFrameError(`PING/PONG frame must be at most ${MAX_PING_BODY} bytes, not ${length}`)
        return
      default:
        throw new RelayFrameError(`unknown relay frame type ${type} (this side speaks ${TLS_RELAY_UPGRADE}: types 1..6)`)
    }
  }

  function deliver (type: RelayFrameType, frame: Uint8Array): void {
    if (type === RelayFrameType.Batch) {
      const size = readRelayBatchSize(frame)
      if (size < 1 || size > maxPacket) throw new RelayFrameError(`BATCH frame of ${size}-byte packets; packets must be 1..${maxPacket} bytes (lower the WireGuard MTU)`)
    }
    onFrame(type, frame)
  }

  function startBody (type: number, length: number, chunk: Uint8Array, at: number): number {
    check(type, length)
    const have = chunk.length - at
    if (have >= length) {
      deliver(type as RelayFrameType, chunk.subarray(at, at + length))
      return at + length
    }
    if (opts.reuse !== true) body = new Uint8Array(length)
    else {
      if (scratch === undefined || scratch.length < length) scratch = new Uint8Array(Math.max(length, scratch?.length ?? 0, 32 * 1024))
      body = scratch.subarray(0, length)
    }
    body.set(chunk.subarray(at), 0)
    bodyHave = have
    head[0] = type
    return chunk.length
  }

  return {
    push (chunk) {
      let at = 0
      const end = chunk.length
      // Finish a frame that an earlier chunk began.
      if (headHave > 0) {
        const take = Math.min(RELAY_FRAME_HEADER - headHave, end)
        head.set(chunk.subarray(0, take), headHave)
        headHave += take
        at = take
        if (headHave < RELAY_FRAME_HEADER) return
        headHave = 0
        at = startBody(head[0]!, (head[1]! << 8) | head[2]!, chunk, at)
      } else if (body !== undefined) {
        const take = Math.min(body.length - bodyHave, end)
        body.set(chunk.subarray(0, take), bodyHave)
        bodyHave += take
        at = take
        if (bodyHave < body.length) return
        const whole = body
        body = undefined
        deliver(head[0] as RelayFrameType, whole)
      }
      while (at < end && body === undefined) {
        if (end - at < RELAY_FRAME_HEADER) {
          head.set(chunk.subarray(at, end), 0)
          headHave = end - at
          return
        }
        at = startBody(chunk[at]!, (chunk[at + 1]! << 8) | chunk[at + 2]!, chunk, at + RELAY_FRAME_HEADER)
      }
      if (body === undefined) scratch = undefined
    },
    buffered: () => headHave + (body === undefined ? 0 : bodyHave)
  }
}

/** readRelayIndex reads the peer index at the start of a DATA or PEER body. */
export function readRelayIndex (body: Uint8Array): number {
  return (body[0]! << 8) | body[1]!
}

// ---------- control messages ----------

const Str = (max: number, extra: Record<string, unknown> = {}) => Type.String({ maxLength: max, ...extra })

/** RelayChallenge is the map's challenge: the nonce the hello must sign. */
export const RelayChallenge = MapChallenge
export type RelayChallenge = Static<typeof RelayChallenge>

/** RelayHello is the map's hello without what only the map needs (endpoints, resume). */
export const RelayHello = Obj({
  ...Type.Omit(MapHello, ['endpoints', 'resume']).properties,
  /** this node takes BATCH frames */
  batch: Type.Optional(Type.Boolean())
})
export type RelayHello = Static<typeof RelayHello>

/** RelayWelcome accepts a node; the limits tell it what the relay will carry. */
export const RelayWelcome = Obj({
  type: Type.Literal('welcome'),
  node: Id,
  maxPacket: Type.Integer({ minimum: 1, maximum: RELAY_MAX_PACKET }),
  /** the relay takes BATCH frames from this node */
  batch: Type.Optional(Type.Boolean())
})
export type RelayWelcome = Static<typeof RelayWelcome>

export const RelayErrorMessage = Obj({ type: Type.Literal('error'), code: Str(64), message: Str(2000) })
export type RelayErrorMessage = Static<typeof RelayErrorMessage>

/** RelayServerMessage is what the relay sends in CONTROL frames. */
export const RelayServerMessage = Type.Union([RelayChallenge, RelayWelcome, RelayErrorMessage])
export type RelayServerMessage = Static<typeof RelayServerMessage>
export type RelayControlMessage = RelayServerMessage | RelayHello

/** relaySigningPayload is the exact text that a relay hello signs. */
export function relaySigningPayload (nonce: string, machineKey: string, version: number): string {
  return JSON.stringify([nonce, machineKey, version])
}

/** decodeRelayControlText is a CONTROL body as text (validate it with the schema of what may come). */
export function decodeRelayControlText (body: Uint8Array): string {
  return new TextDecoder('utf-8', { fatal: false }).decode(body)
}
