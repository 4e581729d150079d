import t from 'tap'
import { spawnSync } from 'node:child_process'
import {
  generateWireGuardKeyPair, wireGuardPublicKey, generateMachineKeyPair, signMessage, verifyMessage,
  wireGuardProof, verifyWireGuardProof, isWireGuardKey
} from '../src/index.js'

const hasWg = spawnSync('wg', ['--version']).status === 0

t.test('wg pubkey agrees with our X25519 public key', { skip: hasWg ? false : 'wg (wireguard-tools) is not installed' }, async t => {
  for (let i = 0; i < 5; i++) {
    const kp = generateWireGuardKeyPair()
    const out = spawnSync('wg', ['pubkey'], { input: kp.privateKey + '\n', encoding: 'utf8' })
    t.equal(out.status, 0, out.stderr)
    t.equal(out.stdout.trim(), kp.publicKey)
  }
  const fromWg = spawnSync('wg', ['genkey'], { encoding: 'utf8' }).stdout.trim()
  const pub = spawnSync('wg', ['pubkey'], { input: fromWg + '\n', encoding: 'utf8' }).stdout.trim()
  t.equal(wireGuardPublicKey(fromWg), pub, 'a key from wg genkey gives the same public key')
})

t.test('generated WireGuard keys are clamped and well-formed', async t => {
  const kp = generateWireGuardKeyPair()
  const priv = Buffer.from(kp.privateKey, 'base64')
  t.equal(priv[0]! & 7, 0)
  t.equal(priv[31]! & 128, 0)
  t.equal(priv[31]! & 64, 64)
  t.ok(isWireGuardKey(kp.publicKey))
  t.notOk(isWireGuardKey('abc'))
  t.throws(() => wireGuardPublicKey('short'), /32 bytes/)
})

t.test('machine key signatures are domain-separated and tamper-evident', async t => {
  const mk = generateMachineKeyPair()
  const sig = signMessage(mk.secretKey, 'd1', 'hello')
  t.ok(verifyMessage(mk.publicKey, 'd1', 'hello', sig))
  t.notOk(verifyMessage(mk.publicKey, 'd2', 'hello', sig), 'other domain')
  t.notOk(verifyMessage(mk.publicKey, 'd1', 'hellp', sig), 'other message')
  t.notOk(verifyMessage(generateMachineKeyPair().publicKey, 'd1', 'hello', sig), 'other key')
  t.notOk(verifyMessage(mk.publicKey, 'd1', 'hello', 'garbage'))
})

t.test('WireGuard proof of possession verifies only with the right keys', async t => {
  const node = generateWireGuardKeyPair()
  const ctl = generateWireGuardKeyPair()
  const proof = wireGuardProof(node.privateKey, ctl.publicKey, 'd', 'm')
  t.ok(verifyWireGuardProof(ctl.privateKey, node.publicKey, 'd', 'm', proof))
  t.notOk(verifyWireGuardProof(ctl.privateKey, generateWireGuardKeyPair().publicKey, 'd', 'm', proof), 'claimed key not owned')
  t.notOk(verifyWireGuardProof(ctl.privateKey, node.publicKey, 'd', 'm2', proof))
})
