import t from 'tap'
import {
  encodeRelayBind, openRelayBind, encodeRelayBindAck, openRelayBindAck, createReplayWindow, newAllocationId,
  isAllocationId, generateWireGuardKeyPair, classifyWgPortPacket, RELAY_BIND_LENGTH, validate, ServerMessage, ClientMessage
} from '../src/index.js'

const node = generateWireGuardKeyPair()
const relay = generateWireGuardKeyPair()
const other = generateWireGuardKeyPair()

function bind (allocation = newAllocationId(), timestampMs = 1_700_000_000_123): Uint8Array {
  return encodeRelayBind({ allocation, timestampMs, nodePrivateKey: node.privateKey, nodePublicKey: node.publicKey, relayPublicKey: relay.publicKey })
}

t.test('a bind opens with the relay key and names the node, allocation and time', async t => {
  const allocation = newAllocationId()
  const p = bind(allocation)
  t.equal(p.length, RELAY_BIND_LENGTH)
  t.equal(classifyWgPortPacket(p), 'control', 'the shared-port rules route it as a control packet')
  const b = openRelayBind(p, relay.privateKey)
  t.equal(b?.nodeKey, node.publicKey)
  t.equal(b?.allocation, allocation)
  t.equal(b?.timestampMs, 1_700_000_000_123)
  t.equal(b?.nonce.length, 24)
})

t.test('a bind is refused with another relay key, when altered, truncated or claiming another node key', async t => {
  const p = bind()
  t.equal(openRelayBind(p, other.privateKey), undefined)
  for (let i = 5; i < p.length; i += 7) {
    const q = p.slice()
    q[i]! ^= 1
    t.equal(openRelayBind(q, relay.privateKey), undefined, `byte ${i} flipped`)
  }
  t.equal(openRelayBind(p.subarray(0, p.length - 1), relay.privateKey), undefined)
  const forged = p.slice()
  forged.set(Buffer.from(other.publicKey, 'base64'), 5)
  t.equal(openRelayBind(forged, relay.privateKey), undefined, 'a sender cannot claim a key it does not hold')
})

t.test('an ack opens only at the node and echoes the bind nonce, observed address and whether the peer is bound', async t => {
  const allocation = newAllocationId()
  const b = openRelayBind(bind(allocation), relay.privateKey)!
  for (const [observed, peerBound] of [[{ address: '203.0.113.9', port: 61000 }, false], [{ address: '2001:db8::9', port: 1 }, true]] as const) {
    const ack = encodeRelayBindAck({ allocation, bindNonce: b.nonce, observed, peerBound, relayPrivateKey: relay.privateKey, nodePublicKey: node.publicKey })
    t.equal(classifyWgPortPacket(ack), 'control')
    t.same(openRelayBindAck(ack, relay.publicKey, node.privateKey), { allocation, bindNonce: b.nonce, observed, peerBound })
    t.equal(openRelayBindAck(ack, other.publicKey, node.privateKey), undefined, 'not from this relay')
    t.equal(openRelayBindAck(ack, relay.publicKey, other.privateKey), undefined, 'not for this node')
  }
})

t.test('allocation ids are 16 bytes of base64url', async t => {
  t.ok(isAllocationId(newAllocationId()))
  t.notOk(isAllocationId('short'))
  t.notOk(isAllocationId('A'.repeat(21) + '!'))
  t.throws(() => encodeRelayBind({ allocation: 'nope', timestampMs: 0, nodePrivateKey: node.privateKey, nodePublicKey: node.publicKey, relayPublicKey: relay.publicKey }), /allocation id/)
})

t.test('the replay window refuses stale times and nonces seen before, and forgets them later', async t => {
  const w = createReplayWindow(30_000)
  const n1 = Uint8Array.from({ length: 24 }, (_, i) => i)
  const n2 = Uint8Array.from({ length: 24 }, (_, i) => i + 1)
  t.equal(w.check(n1, 100_000, 100_000), 'ok')
  t.equal(w.check(n1, 100_000, 100_001), 'replay')
  t.equal(w.check(n2, 69_999, 100_000), 'stale')
  t.equal(w.check(n2, 130_001, 100_000), 'stale')
  t.equal(w.check(n2, 120_000, 100_000), 'ok')
  t.equal(w.check(n1, 100_000, 200_000), 'stale', 'an old nonce is refused by its time once forgotten')
  t.equal(w.size(), 0, 'nonces past the window are swept')
})

t.test('relay messages validate in the map protocol', async t => {
  const grant = {
    type: 'relay-grant', peer: other.publicKey, peerId: 'n2', relay: 'embedded', relayKey: relay.publicKey,
    endpoint: '198.51.100.1:40001', allocation: newAllocationId(), expires: new Date(0).toISOString()
  }
  t.same(validate(ServerMessage, grant, 'grant'), grant)
  const revoke = { type: 'relay-revoke', peer: 'n2', code: 'not_allowed', message: 'the policy does not let these nodes talk' }
  t.same(validate(ServerMessage, revoke, 'revoke'), revoke)
  t.same(validate(ClientMessage, { type: 'relay-request', peer: 'n2' }, 'request'), { type: 'relay-request', peer: 'n2' })
  t.throws(() => validate(ClientMessage, { type: 'relay-request', peer: '' }, 'request'))
})
