import t from 'tap'
import {
  createRelayFrameDecoder, encodeRelayData, encodeRelayPeer, encodeRelayControl, encodeRelayFrame, relayDataHeader,
  readRelayIndex, decodeRelayControlText, RelayFrameType, RelayFrameError, RELAY_MAX_PACKET, relayBatchHeader, readRelayBatchSize, forEachBatchPacket
} from '../src/index.js'

interface Got { type: number, body: number[] }

function decodeAll (chunks: Uint8Array[], opts?: { maxPacket?: number, reuse?: boolean }): Got[] {
  const got: Got[] = []
  const d = createRelayFrameDecoder((type, body) => { got.push({ type, body: [...body] }) }, opts)
  for (const c of chunks) d.push(c)
  t.equal(d.buffered(), 0, 'nothing left half-read')
  return got
}

const concat = (parts: Uint8Array[]): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) { out.set(p, at); at += p.length }
  return out
}

const key = new Uint8Array(32).map((_, i) => i + 1)
const packet = (n: number, fill: number): Uint8Array => new Uint8Array(n).fill(fill)
const stream = concat([
  encodeRelayPeer(7, key),
  encodeRelayData(7, packet(148, 1)),
  encodeRelayData(7, packet(1452, 2)),
  encodeRelayFrame(RelayFrameType.Ping, Uint8Array.of(9, 9)),
  encodeRelayControl({ type: 'error', code: 'x', message: 'y' }),
  encodeRelayData(65535, packet(1, 3))
])

t.test('frames come out whole however the stream is cut', async t => {
  const whole = decodeAll([stream])
  t.same(whole.map(f => f.type), [2, 1, 1, 4, 3, 1])
  t.equal(readRelayIndex(Uint8Array.from(whole[0]!.body)), 7)
  t.same(whole[0]!.body.slice(2), [...key])
  t.equal(readRelayIndex(Uint8Array.from(whole[5]!.body)), 65535)
  t.same(JSON.parse(decodeRelayControlText(Uint8Array.from(whole[4]!.body))), { type: 'error', code: 'x', message: 'y' })
  // every cut point, and byte by byte
  for (let cut = 1; cut < stream.length; cut += 37) {
    t.same(decodeAll([stream.subarray(0, cut), stream.subarray(cut)]), whole, `cut at ${cut}`)
  }
  t.same(decodeAll([...stream].map(b => Uint8Array.of(b))), whole, 'one byte at a time')
  // the same with split frames assembled in one reused buffer
  for (let cut = 1; cut < stream.length; cut += 37) {
    t.same(decodeAll([stream.subarray(0, cut), stream.subarray(cut)], { reuse: true }), whole, `cut at ${cut}, reusing`)
  }
  t.same(decodeAll([...stream].map(b => Uint8Array.of(b)), { reuse: true }), whole, 'one byte at a time, reusing')
})

t.test('with reuse, split frames share one buffer while they keep coming, and none is held after', async t => {
  const frames = [encodeRelayData(1, packet(3000, 1)), encodeRelayData(1, packet(3000, 2)), encodeRelayData(1, packet(3000, 3))]
  const all = concat(frames)
  // Chunks of 2000 bytes split every frame; the last chunk ends on a frame boundary.
  const chunks = [0, 2000, 4000, 6000, 8000].map(at => all.subarray(at, Math.min(at + 2000, all.length)))
  const buffers = (reuse: boolean): ArrayBufferLike[] => {
    const seen: ArrayBufferLike[] = []
    const d = createRelayFrameDecoder((_type, body) => { seen.push(body.buffer) }, { reuse })
    for (const c of chunks) d.push(c)
    d.push(frames[0]!.subarray(0, 100)) // a new split frame after the boundary
    d.push(frames[0]!.subarray(100))
    return seen
  }
  const reused = buffers(true)
  t.equal(reused.length, 4)
  t.equal(reused[0], reused[1], 'the second split frame is assembled where the first was')
  t.equal(reused[1], reused[2])
  t.not(reused[3], reused[2], 'the buffer was let go at the frame boundary, so an idle link holds none')
  const fresh = buffers(false)
  t.not(fresh[0], fresh[1], 'without reuse each split frame gets its own buffer, which the handler may keep')
})

t.test('a frame that lies whole in a chunk is a view, not a copy', async t => {
  const chunk = encodeRelayData(1, packet(100, 5))
  let seen: Uint8Array | undefined
  createRelayFrameDecoder((_type, body) => { seen = body }).push(chunk)
  t.equal(seen!.buffer, chunk.buffer)
})

t.test('oversize and malformed frames are refused with a reason', async t => {
  t.throws(() => relayDataHeader(0, RELAY_MAX_PACKET + 1), { code: 'bad_relay_frame' })
  t.ok(new RelayFrameError('x') instanceof Error)
  t.throws(() => relayDataHeader(0, 0), /1\.\.65533/)
  t.throws(() => encodeRelayPeer(70000, key), /outside/)
  const big = encodeRelayData(1, packet(2000, 1))
  const d = createRelayFrameDecoder(() => t.fail('no frame'), { maxPacket: 1500 })
  // refused from its header alone, before the body arrives
  t.throws(() => d.push(big.subarray(0, 3)), /2000-byte packet.*at most 1500/)
  t.throws(() => createRelayFrameDecoder(() => {}).push(Uint8Array.of(9, 0, 0)), /unknown relay frame type 9/)
  t.throws(() => createRelayFrameDecoder(() => {}).push(Uint8Array.of(1, 0, 2, 0, 0)), /holds no packet/)
  t.throws(() => createRelayFrameDecoder(() => {}).push(Uint8Array.of(2, 0, 3, 0, 0, 1)), /PEER frame must be 34 bytes/)
  t.throws(() => createRelayFrameDecoder(() => {}).push(Uint8Array.of(3, 0xff, 0xff)), /CONTROL frame/)
})

const encodeBatch = (index: number, size: number, packets: Uint8Array): Uint8Array => {
  const out = new Uint8Array(7 + packets.length)
  relayBatchHeader(index, size, packets.length, out)
  out.set(packets, 7)
  return out
}

t.test('a BATCH frame carries packets of one size, the last shorter, and splits back into them', async t => {
  const packets = concat([packet(1452, 1), packet(1452, 2), packet(96, 3)])
  const frames = decodeAll([concat([encodeBatch(4, 1452, packets), encodeRelayData(4, packet(10, 4))])])
  t.same(frames.map(f => f.type), [RelayFrameType.Batch, RelayFrameType.Data])
  const body = Uint8Array.from(frames[0]!.body)
  t.equal(readRelayIndex(body), 4)
  t.equal(readRelayBatchSize(body), 1452)
  const out: Array<[number, number]> = []
  forEachBatchPacket(body, p => out.push([p.length, p[0]!]))
  t.same(out, [[1452, 1], [1452, 2], [96, 3]])
  // the largest batch a u16 length can say
  t.doesNotThrow(() => relayBatchHeader(0, 1452, 65531))
  t.throws(() => relayBatchHeader(0, 1452, 65532), /1\.\.65531/)
  t.throws(() => relayBatchHeader(0, 0, 100), /packet size must be 1\.\.100/)
  t.throws(() => relayBatchHeader(0, 200, 100), /packet size must be 1\.\.100/)
})

t.test('a BATCH frame of packets over the limit, or with no packet, is refused', async t => {
  t.throws(() => createRelayFrameDecoder(() => t.fail('no frame'), { maxPacket: 1500 }).push(encodeBatch(0, 1600, packet(3200, 1))), /1600-byte packets; packets must be 1\.\.1500/)
  t.throws(() => createRelayFrameDecoder(() => {}).push(Uint8Array.of(6, 0, 4, 0, 0, 0, 1)), /BATCH frame of 4 bytes holds no packet/)
  t.throws(() => createRelayFrameDecoder(() => {}).push(Uint8Array.of(6, 0, 5, 0, 0, 0, 0, 1)), /0-byte packets/)
})
