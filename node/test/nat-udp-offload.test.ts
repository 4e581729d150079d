import t, { type Test } from 'tap'
import { createSocket, type Socket } from 'node:dgram'
import { randomBytes } from 'node:crypto'
import { enableUdpOffload, wireGuardSegmentSize, splitPackets, createSegmentBatcher, socketFd } from '../src/nat/udp-offload.js'

/**
 * UDP segmentation offload on the TLS relay's loopback sockets: finding WireGuard's packets
 * in a coalesced receive, gathering runs for one send, and the kernel doing both on real
 * loopback sockets.
 */

/** wgData is a WireGuard transport-data packet of `size` bytes: type 4, receiver index, counter, ciphertext. */
function wgData (size: number, receiver: number, counter: number): Buffer {
  const b = randomBytes(size)
  b.writeUInt32LE(4, 0)
  b.writeUInt32LE(receiver, 4)
  b.writeBigUInt64LE(BigInt(counter), 8)
  return b
}

const sizes = (buf: Uint8Array, size: number): number[] => {
  const out: number[] = []
  splitPackets(buf, size, p => out.push(p.length))
  return out
}

t.test('a coalesced receive is cut back into WireGuard packets of one size', async t => {
  const batch = Buffer.concat([wgData(1452, 0xabc, 1), wgData(1452, 0xabc, 2), wgData(1452, 0xabc, 3), wgData(96, 0xabc, 4)])
  t.equal(wireGuardSegmentSize(batch), 1452, 'found by scanning')
  t.equal(wireGuardSegmentSize(batch, 1452), 1452, 'and from the size seen last')
  t.same(sizes(batch, 1452), [1452, 1452, 1452, 96])
  // Sizes need not be multiples of 16: WireGuard pads to 16 only up to the MTU.
  const odd = Buffer.concat([wgData(1312, 7, 1), wgData(1312, 7, 2)])
  t.equal(wireGuardSegmentSize(odd, 1452), 1312, 'a stale hint is not trusted')
  t.same(sizes(odd, 1312), [1312, 1312])
})

t.test('one packet, a handshake, or a small packet is passed whole', async t => {
  t.equal(wireGuardSegmentSize(wgData(1452, 1, 1)), 0, 'a single data packet')
  const init = randomBytes(148)
  init.writeUInt32LE(1, 0)
  t.equal(wireGuardSegmentSize(init), 0, 'a handshake initiation')
  t.equal(wireGuardSegmentSize(wgData(32, 1, 1)), 0, 'a keepalive')
  t.same(sizes(wgData(148, 1, 1), 0), [148])
  // Two sessions' packets do not match each other's header: no split.
  t.equal(wireGuardSegmentSize(Buffer.concat([wgData(200, 1, 1), wgData(200, 2, 1)])), 0)
})

t.test('a batcher sends runs of full-sized packets in one send, a shorter one ending the run', async t => {
  const sends: number[] = []
  const b = createSegmentBatcher(run => sends.push(run.length), 1452)
  for (let i = 0; i < 3; i++) t.ok(b.add(new Uint8Array(1452)))
  t.ok(b.add(new Uint8Array(96)))
  t.ok(b.add(new Uint8Array(1452)))
  t.same(sends, [3 * 1452 + 96], 'a short packet ends the run at once')
  b.flush()
  t.same(sends.at(-1), 1452)
  t.notOk(b.add(new Uint8Array(1500)), 'a packet larger than the segment size cannot go through this socket')
  // A run stops where one send's payload would pass 65507 bytes: 45 packets of 1452.
  sends.length = 0
  for (let i = 0; i < 100; i++) b.add(new Uint8Array(1452))
  b.flush()
  t.same(sends, [45 * 1452, 45 * 1452, 10 * 1452])
  b.flush()
  t.equal(sends.length, 3, 'flushing nothing sends nothing')
})

t.test('a run holds copies of its packets, and done gives its memory back', async t => {
  const runs: Array<{ run: Uint8Array, done: () => void }> = []
  const b = createSegmentBatcher((run, done) => runs.push({ run, done }), 4)
  const read = Buffer.from([1, 2, 3, 4, 5, 6, 7, 8])
  b.add(read.subarray(0, 4))
  b.add(read.subarray(4, 8))
  read.fill(0) // the read buffer is reused before the run goes out
  b.flush()
  t.same([...runs[0]!.run], [1, 2, 3, 4, 5, 6, 7, 8])
  runs[0]!.done()
  t.equal(runs[0]!.run.buffer.byteLength, 0, 'the run\'s memory is given back')
  b.add(Buffer.from([9, 9]))
  t.same([...runs[1]!.run], [9, 9], 'a short packet alone is a run of its own')
})

async function bound (t: Test): Promise<Socket> {
  const s = createSocket('udp4')
  await new Promise<void>(resolve => s.bind(0, '127.0.0.1', resolve))
  t.teardown(() => s.close())
  return s
}

t.test('on real loopback sockets: one send leaves as segments, and a GRO socket receives them as one', async t => {
  const sender = await bound(t)
  const plain = await bound(t)
  const gro = await bound(t)
  t.type(await socketFd(sender.address().port), 'number', 'the socket is found among the process\'s descriptors')
  t.same(await enableUdpOffload(sender, { segmentBytes: 1452 }), { segmentBytes: 1452, gro: false })
  t.same(await enableUdpOffload(gro, { gro: true }), { gro: true })

  const got = (s: Socket, n: number): Promise<number[]> => new Promise(resolve => {
    const lens: number[] = []
    const on = (m: Buffer): void => {
      lens.push(m.length)
      if (lens.reduce((a, b) => a + b, 0) >= n) { s.off('message', on); resolve(lens) }
    }
    s.on('message', on)
  })
  const batch = Buffer.concat([wgData(1452, 9, 1), wgData(1452, 9, 2), wgData(96, 9, 3)])
  const toPlain = got(plain, batch.length)
  sender.send(batch, plain.address().port, '127.0.0.1')
  t.same(await toPlain, [1452, 1452, 96], 'a socket without GRO gets three datagrams')
  const toGro = got(gro, batch.length)
  sender.send(batch, gro.address().port, '127.0.0.1')
  const lens = await toGro
  t.same(lens, [3000], 'a GRO socket gets the batch in one receive')
  await t.rejects(enableUdpOffload(sender, { segmentBytes: 70000 }), RangeError)
})
