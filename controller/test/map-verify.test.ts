import t from 'tap'
import fc from 'fast-check'
import { generateMachineKeyPair, signMessage, verifyMessage, MAP_DOMAIN } from '@warren/protocol'
import { verifyMachineSignature } from '../src/map/verify.js'

t.test('the OpenSSL check agrees with the protocol\'s verifyMessage', async t => {
  const a = generateMachineKeyPair()
  const b = generateMachineKeyPair()
  fc.assert(fc.property(fc.string({ maxLength: 200 }), fc.boolean(), fc.boolean(), (msg, otherKey, tamper) => {
    const sig = signMessage(a.secretKey, MAP_DOMAIN, msg)
    const key = otherKey ? b.publicKey : a.publicKey
    const text = tamper ? `${msg}!` : msg
    const want = verifyMessage(key, MAP_DOMAIN, text, sig)
    return verifyMachineSignature(key, MAP_DOMAIN, text, sig) === want && want === (!otherKey && !tamper)
  }), { numRuns: 60 })
  const sig = signMessage(a.secretKey, MAP_DOMAIN, 'x')
  t.notOk(verifyMachineSignature(a.publicKey, 'other-domain', 'x', sig), 'another domain does not verify')
  t.notOk(verifyMachineSignature('not base64!', MAP_DOMAIN, 'x', sig), 'a malformed key is false, not a throw')
  t.notOk(verifyMachineSignature(a.publicKey, MAP_DOMAIN, 'x', sig.slice(0, -4)), 'a short signature is false')
})
