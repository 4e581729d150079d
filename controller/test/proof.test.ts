import t from 'tap'
import { generateWireGuardKeyPair, wireGuardProof } from '@warren/protocol'
import { createWireGuardProofVerifier } from '../src/proof.js'

t.test('the OpenSSL proof check agrees with the protocol\'s wireGuardProof', async t => {
  const controller = generateWireGuardKeyPair()
  const verify = createWireGuardProofVerifier(controller.privateKey, controller.publicKey)
  for (let i = 0; i < 20; i++) {
    const node = generateWireGuardKeyPair()
    const proof = wireGuardProof(node.privateKey, controller.publicKey, 'd', `m${i}`)
    t.ok(verify(node.publicKey, 'd', `m${i}`, proof), 'a real proof passes')
    t.notOk(verify(node.publicKey, 'd', `other${i}`, proof), 'a proof of another message fails')
    t.notOk(verify(generateWireGuardKeyPair().publicKey, 'd', `m${i}`, proof), 'a proof for another key fails')
  }
  const node = generateWireGuardKeyPair()
  t.notOk(verify(node.publicKey, 'd', 'm', 'not base64!'), 'garbage proof fails')
  t.notOk(verify('AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=', 'd', 'm', wireGuardProof(node.privateKey, controller.publicKey, 'd', 'm')), 'a low-order public key fails')
})
