import t from 'tap'
import {
  parseIpAddress, parseIpPrefix, prefixContains, formatIpPrefix, formatIpAddress, prefixRange,
  filterAllows, protocolHasPorts, IpProto, protocolName, createSerialQueue, parseHostPort, isKeyExpired,
  type FilterRule
} from '../src/index.js'

t.test('addresses and prefixes parse once, canonically', async t => {
  t.same(parseIpAddress('100.64.0.1'), { family: 4, network: 0x64400001n, length: 32 })
  t.equal(parseIpAddress('100.64.0.01'), undefined, 'no leading zeros (octal ambiguity)')
  t.equal(parseIpAddress('1.2.3'), undefined, 'no short forms')
  t.equal(parseIpAddress('fe80::1%eth0'), undefined, 'no zones')
  t.equal(parseIpAddress('10.0.0.0/8'), undefined, 'an address has no length')
  t.equal(formatIpPrefix(parseIpPrefix('10.1.2.3/8')!), '10.0.0.0/8', 'host bits cleared')
  t.equal(parseIpPrefix('10.1.2.3/8', { strict: true }), undefined, 'strict refuses host bits')
  t.equal(parseIpPrefix('10.0.0.0/33'), undefined)
  t.equal(parseIpPrefix('10.0.0.0/08'), undefined, 'no leading zero in the length')
  t.equal(formatIpPrefix(parseIpPrefix('FD7A:115C:A1E0:0:0:0:0:1/64')!), 'fd7a:115c:a1e0::/64')
  t.equal(formatIpAddress(6, parseIpAddress('2001:db8:0:0:1:0:0:1')!.network), '2001:db8::1:0:0:1', 'RFC 5952')
  t.ok(prefixContains(parseIpPrefix('100.64.0.0/10')!, parseIpAddress('100.127.255.255')!))
  t.notOk(prefixContains(parseIpPrefix('100.64.0.0/10')!, parseIpAddress('100.128.0.0')!))
  t.notOk(prefixContains(parseIpPrefix('::/0')!, parseIpAddress('1.2.3.4')!), 'families never mix')
  t.same(prefixRange(parseIpPrefix('10.0.0.0/30')!), { first: 0x0a000000n, last: 0x0a000003n })
})

t.test('filterAllows: protocol, source and, for protocols with ports, the port', async t => {
  const filter: FilterRule[] = [
    { srcs: ['100.64.0.2', 'fd7a:115c:a1e0::/48'], protos: [6, 33], ports: [{ first: 22, last: 22 }] },
    { srcs: ['*'], protos: [1], ports: [] }
  ]
  t.ok(filterAllows(filter, { src: '100.64.0.2', proto: 6, dport: 22 }))
  t.notOk(filterAllows(filter, { src: '100.64.0.2', proto: 6, dport: 23 }))
  t.notOk(filterAllows(filter, { src: '100.64.0.2', proto: 6 }), 'no port: not allowed for a port protocol')
  t.notOk(filterAllows(filter, { src: '100.64.0.2', proto: 33, dport: 80 }), 'DCCP is judged by its port')
  t.ok(filterAllows(filter, { src: 'fd7a:115c:a1e0::9', proto: 6, dport: 22 }))
  t.notOk(filterAllows(filter, { src: '100.64.0.3', proto: 6, dport: 22 }))
  t.ok(filterAllows(filter, { src: '203.0.113.9', proto: 1 }), '* is every address')
  t.notOk(filterAllows(filter, { src: 'nonsense', proto: 1 }))
  t.ok(protocolHasPorts(IpProto.UDPLite))
  t.notOk(protocolHasPorts(IpProto.ICMPv4))
  t.equal(protocolName(132), 'sctp')
  t.equal(protocolName(99), '99')
})

t.test('createSerialQueue runs jobs one at a time, in order, past failures', async t => {
  const q = createSerialQueue()
  const seen: string[] = []
  let running = 0
  const job = (name: string, fail = false) => q.run(async () => {
    running++
    t.equal(running, 1, `${name} runs alone`)
    await new Promise(resolve => setImmediate(resolve))
    seen.push(name)
    running--
    if (fail) throw new Error(name)
    return name
  })
  const results = await Promise.allSettled([job('a'), job('b', true), job('c')])
  t.same(seen, ['a', 'b', 'c'])
  t.equal(results[1]!.status, 'rejected')
  t.same(results[2], { status: 'fulfilled', value: 'c' })
  await q.idle()
})

t.test('parseHostPort and isKeyExpired', async t => {
  t.same(parseHostPort('[::1]:8443', '--listen'), { host: '::1', port: 8443 })
  t.same(parseHostPort(':0', '--listen'), { host: '', port: 0 })
  t.throws(() => parseHostPort('host:70000', '--listen'), { code: 'bad_host_port', message: /--listen 'host:70000' must be HOST:PORT/ })
  t.throws(() => parseHostPort('::1:80', '--listen'), { code: 'bad_host_port' })
  t.notOk(isKeyExpired(undefined, 5))
  t.ok(isKeyExpired(new Date(1000).toISOString(), 1000))
  t.notOk(isKeyExpired(new Date(1001).toISOString(), 1000))
})
