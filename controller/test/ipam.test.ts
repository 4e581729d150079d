import t from 'tap'
import { nextIPv4, meshIPv6, randomUlaPrefix } from '../src/ipam.js'
import { uniqueNodeName } from '../src/names.js'
import { testController, registration, call, setupUserKey } from './helpers.js'

t.test('IPv4 addresses come in order and skip .0, .255, the MagicDNS /24 and the reserved 100.115.92.0/23', async t => {
  t.same(nextIPv4(0), { offset: 1, ipv4: '100.64.0.1' })
  t.equal(nextIPv4(254).ipv4, '100.64.1.1', '100.64.0.255 and 100.64.1.0 are skipped')
  const offsetOf254 = (100 - 64) * 65536 + 99 * 256 + 254
  t.equal(nextIPv4(offsetOf254 - 1).ipv4, '100.100.99.254')
  t.equal(nextIPv4(offsetOf254).ipv4, '100.100.101.1', '100.100.100.0/24 is skipped')
  const offsetOf91254 = (115 - 64) * 65536 + 91 * 256 + 254
  t.equal(nextIPv4(offsetOf91254).ipv4, '100.115.94.1', '100.115.92.0/23 is skipped: policies leave it out of *')
  t.throws(() => nextIPv4((1 << 22) - 2), { code: 'address_space_exhausted' })
  let last = 0
  let increasing = true
  const seen = new Set<string>()
  for (let i = 0; i < 2000; i++) {
    const next = nextIPv4(last)
    increasing &&= next.offset > last
    seen.add(next.ipv4)
    last = next.offset
  }
  t.ok(increasing, 'the counter only grows')
  t.equal(seen.size, 2000)
  t.notOk([...seen].some(ip => /\.(0|255)$/.test(ip)))
})

t.test('IPv6 addresses are the ULA prefix with the IPv4 address in the last 32 bits', async t => {
  t.equal(meshIPv6('fd7a:115c:a1e0::/48', '100.64.0.1'), 'fd7a:115c:a1e0::6440:1')
  t.equal(meshIPv6('fd12:3456:789a::/48', '100.127.255.254'), 'fd12:3456:789a::647f:fffe')
  const p = randomUlaPrefix()
  t.match(p, /^fd[0-9a-f]{2}:[0-9a-f]{1,4}:[0-9a-f]{1,4}::\/48$/)
  t.not(randomUlaPrefix(), p)
})

t.test('node names are DNS-safe and unique', async t => {
  const taken = new Set<string>()
  const add = (h: string): string => { const n = uniqueNodeName(h, x => taken.has(x)); taken.add(n); return n }
  t.same(['My Laptop', 'my-laptop', 'MY_LAPTOP.local', '', '---'].map(add), ['my-laptop', 'my-laptop-1', 'my-laptop-2', 'node', 'node-1'])
  const long = 'a'.repeat(70)
  t.equal(add(long), 'a'.repeat(63))
  t.equal(add(long), 'a'.repeat(61) + '-1', 'a suffix keeps the name within 63 characters')
})

t.test('addresses are unique, stable across restarts and never reused after a delete', async t => {
  let tc = await testController(t)
  const key = await setupUserKey(tc, { reusable: true, preapproved: true })
  const reg = async (hostname: string) => (await call(tc.app, 'POST', '/v1/machine/register', registration(tc.state.controllerKey.publicKey, { authKey: key, hostname }))).body.node
  const a = await reg('a')
  const b = await reg('b')
  const prefix = tc.state.ulaPrefix
  await call(tc.admin, 'DELETE', '/v1/nodes/b')
  tc = await tc.reopen()
  t.equal(tc.state.ulaPrefix, prefix, 'the ULA prefix is kept')
  t.same(tc.state.getNode('a'), { ...a, online: false }, 'the node is the same after a restart')
  const c = await reg('c')
  t.not(c.ipv4, b.ipv4, 'a deleted node\'s address is not given again')
  t.equal(c.ipv4, '100.64.0.3')
  t.equal(c.name, 'c')
  const d = await reg('a')
  t.equal(d.name, 'a-1', 'names stay unique across restarts')
})
