import t from 'tap'
import {
  generateWireGuardKeyPair, discoSharedKey, sealDisco, openDisco, discoSender, createDiscoReplayGuard,
  classifyWgPortPacket, decodeControl, ControlKind, randomBytes, DISCO_MAX_AGE_MS, type DiscoMessage
} from '../src/index.js'

const a = generateWireGuardKeyPair()
const b = generateWireGuardKeyPair()
const c = generateWireGuardKeyPair()
const now = 1_800_000_000_000

t.test('a ping and its pong open on the other side with the sender key carried in clear', async t => {
  const ping: DiscoMessage = { kind: 'ping', txid: randomBytes(12), sentAt: now }
  const packet = sealDisco(ping, a.publicKey, discoSharedKey(a.privateKey, b.publicKey))
  t.equal(classifyWgPortPacket(packet), 'control')
  t.equal(decodeControl(packet)?.kind, ControlKind.DiscoPing)
  t.equal(discoSender(packet), a.publicKey)
  t.same(openDisco(packet, k => k === a.publicKey ? discoSharedKey(b.privateKey, a.publicKey) : undefined), { sender: a.publicKey, msg: ping })

  for (const src of [{ address: '198.51.100.9', port: 40000 }, { address: '2001:db8::7', port: 41641 }]) {
    const pong: DiscoMessage = { kind: 'pong', txid: ping.txid, sentAt: now + 3, src }
    const back = sealDisco(pong, b.publicKey, discoSharedKey(b.privateKey, a.publicKey))
    t.equal(decodeControl(back)?.kind, ControlKind.DiscoPong)
    t.same(openDisco(back, k => discoSharedKey(a.privateKey, k)), { sender: b.publicKey, msg: pong })
  }
})

t.test('a probe sealed for someone else, or claiming another sender, is refused', async t => {
  const packet = sealDisco({ kind: 'ping', txid: randomBytes(12), sentAt: now }, a.publicKey, discoSharedKey(a.privateKey, b.publicKey))
  t.equal(openDisco(packet, k => discoSharedKey(c.privateKey, k)), undefined, 'c cannot open what a sealed for b')
  t.equal(openDisco(packet, () => undefined), undefined, 'a sender that is not a peer')
  const forged = sealDisco({ kind: 'ping', txid: randomBytes(12), sentAt: now }, a.publicKey, discoSharedKey(c.privateKey, b.publicKey))
  t.equal(discoSender(forged), a.publicKey, 'c claims to be a')
  t.equal(openDisco(forged, k => discoSharedKey(b.privateKey, k)), undefined, 'b refuses it')
})

t.test('any altered byte is refused, and a ping cannot pass for a pong', async t => {
  const packet = sealDisco({ kind: 'pong', txid: randomBytes(12), sentAt: now, src: { address: '10.0.0.1', port: 1 } }, a.publicKey, discoSharedKey(a.privateKey, b.publicKey))
  const shared = (k: string): Uint8Array => discoSharedKey(b.privateKey, k)
  for (let i = 5; i < packet.length; i++) {
    const bad = Uint8Array.from(packet)
    bad[i]! ^= 0x01
    t.equal(openDisco(bad, shared), undefined, `byte ${i}`)
  }
  const relabeled = Uint8Array.from(packet)
  relabeled[4] = ControlKind.DiscoPing
  t.equal(openDisco(relabeled, shared), undefined, 'kind byte changed')
  t.equal(openDisco(packet.subarray(0, 40), shared), undefined, 'truncated')
  t.equal(discoSender(Uint8Array.of(1, 0, 0, 0, 9)), undefined, 'WireGuard is not disco')
})

t.test('the replay guard refuses repeats and probes outside the age window, and forgets old entries', async t => {
  const guard = createDiscoReplayGuard()
  const ping: DiscoMessage = { kind: 'ping', txid: randomBytes(12), sentAt: now }
  t.ok(guard.accept(a.publicKey, ping, now + 10))
  t.notOk(guard.accept(a.publicKey, ping, now + 20), 'replayed')
  t.ok(guard.accept(a.publicKey, { ...ping, kind: 'pong', src: { address: '10.0.0.1', port: 1 } }, now + 20), 'its pong is another message')
  t.ok(guard.accept(c.publicKey, ping, now + 20), 'same id from another sender')
  t.notOk(guard.accept(a.publicKey, { ...ping, txid: randomBytes(12) }, now + DISCO_MAX_AGE_MS + 1), 'too old')
  t.notOk(guard.accept(a.publicKey, { ...ping, txid: randomBytes(12), sentAt: now + DISCO_MAX_AGE_MS + 1 }, now), 'from the future')
  t.ok(guard.accept(a.publicKey, { ...ping, txid: randomBytes(12) }, now + DISCO_MAX_AGE_MS), 'just inside the window')
  guard.accept(a.publicKey, { ...ping, txid: randomBytes(12), sentAt: now + 5 * DISCO_MAX_AGE_MS }, now + 5 * DISCO_MAX_AGE_MS)
  t.equal(guard.size, 1, 'expired entries are gone')
  const small = createDiscoReplayGuard({ maxEntries: 3 })
  for (let i = 0; i < 10; i++) small.accept(a.publicKey, { ...ping, txid: randomBytes(12) }, now)
  t.ok(small.size <= 3, 'bounded')
})

t.test('sealing refuses bad input with a clear error', async t => {
  const shared = discoSharedKey(a.privateKey, b.publicKey)
  t.throws(() => sealDisco({ kind: 'ping', txid: randomBytes(4), sentAt: now }, a.publicKey, shared), /12 bytes/)
  t.throws(() => sealDisco({ kind: 'pong', txid: randomBytes(12), sentAt: now }, a.publicKey, shared), /source IP/)
  t.throws(() => discoSharedKey('nope', b.publicKey), /32 bytes/)
})
