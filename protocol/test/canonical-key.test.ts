import t from 'tap'
import { generateWireGuardKeyPair, isCanonicalWireGuardKey } from '../src/index.js'

const key = (bytes: number[]): string => Buffer.from(bytes).toString('base64')

t.test('isCanonicalWireGuardKey: real public keys pass; bit 255 or a value at or above 2^255-19 does not', async t => {
  for (let i = 0; i < 50; i++) t.ok(isCanonicalWireGuardKey(generateWireGuardKeyPair().publicKey))
  const p = [0xed, ...Array(30).fill(0xff), 0x7f] // 2^255 - 19, little-endian
  t.notOk(isCanonicalWireGuardKey(key(p)), 'p itself')
  t.ok(isCanonicalWireGuardKey(key([0xec, ...p.slice(1)])), 'p - 1')
  t.notOk(isCanonicalWireGuardKey(key([0xff, ...p.slice(1)])), '2^255 - 1')
  t.ok(isCanonicalWireGuardKey(key([1, ...Array(31).fill(0)])))
  t.notOk(isCanonicalWireGuardKey(key([1, ...Array(30).fill(0), 0x80])), 'bit 255 set')
  t.notOk(isCanonicalWireGuardKey('not a key'))
  t.notOk(isCanonicalWireGuardKey(42))
})
