import t from 'tap'
import { generateWireGuardKeyPair } from '@warren/protocol'
import { createDisco, type DiscoPong } from '../src/nat/disco.js'
import { createFakeWire } from './nat-fake-port.js'

/** pair is two nodes' disco on one fake wire, at 10.0.0.1:41641 and 10.0.0.2:41642. */
function pair () {
  const wire = createFakeWire()
  const a = generateWireGuardKeyPair()
  const b = generateWireGuardKeyPair()
  const pa = wire.port('10.0.0.1', 41641)
  const pb = wire.port('10.0.0.2', 41642)
  const da = createDisco({ port: pa, privateKey: a.privateKey })
  const db = createDisco({ port: pb, privateKey: b.privateKey })
  return { wire, a, b, pa, pb, da, db }
}

/** settle lets a few event-loop turns pass: a ping and its pong each take one */
const settle = async (): Promise<void> => { for (let i = 0; i < 4; i++) await new Promise(resolve => setImmediate(resolve)) }

t.test('a ping to a peer is answered with a pong that says where the ping came from', async t => {
  const { a, b, pa, da, db } = pair()
  da.setPeers([b.publicKey])
  db.setPeers([a.publicKey])
  const pings: string[] = []
  const pongs: DiscoPong[] = []
  db.onPing((k, from) => pings.push(`${k} ${from.address}:${from.port}`))
  da.onPong(p => pongs.push(p))
  const txid = da.ping(b.publicKey, { address: '10.0.0.2', port: 41642 }, { ttl: 2 })
  await settle()
  t.same(pa.sent[0]?.ttl, 2, 'the TTL reaches the shared port')
  t.same(pings, [`${a.publicKey} 10.0.0.1:41641`])
  t.same(pongs, [{ peerKey: b.publicKey, txid, from: { address: '10.0.0.2', port: 41642 }, src: { address: '10.0.0.1', port: 41641 } }])
  t.throws(() => da.ping(generateWireGuardKeyPair().publicKey, { address: '10.0.0.2', port: 41642 }), /not a peer/)
  da.close()
  db.close()
})

t.test('over IPv6 a pong names the ping\'s IPv6 source', async t => {
  const wire = createFakeWire()
  const a = generateWireGuardKeyPair()
  const b = generateWireGuardKeyPair()
  const da = createDisco({ port: wire.port('2001:db8::1', 41641), privateKey: a.privateKey })
  const db = createDisco({ port: wire.port('2001:db8::2', 41642), privateKey: b.privateKey })
  da.setPeers([b.publicKey])
  db.setPeers([a.publicKey])
  const pongs: DiscoPong[] = []
  da.onPong(p => pongs.push(p))
  const txid = da.ping(b.publicKey, { address: '2001:db8::2', port: 41642 })
  await settle()
  t.same(pongs, [{ peerKey: b.publicKey, txid, from: { address: '2001:db8::2', port: 41642 }, src: { address: '2001:db8::1', port: 41641 } }])
  da.close()
  db.close()
})

t.test('probes from keys that are not peers, and replays, get no answer', async t => {
  const { a, b, pa, pb, da, db } = pair()
  da.setPeers([b.publicKey])
  db.setPeers([])
  da.ping(b.publicKey, { address: '10.0.0.2', port: 41642 })
  await settle()
  t.equal(pb.sent.length, 0, 'b does not know a: no pong')
  db.setPeers([a.publicKey])
  da.ping(b.publicKey, { address: '10.0.0.2', port: 41642 })
  await settle()
  t.equal(pb.sent.length, 1, 'now it answers')
  pb.deliver({ kind: 'control', data: pa.sent[1]!.data, from: { address: '10.0.0.9', port: 9 } })
  await settle()
  t.equal(pb.sent.length, 1, 'a replayed ping from elsewhere is dropped')
  da.close()
  db.close()
})
