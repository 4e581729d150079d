import t from 'tap'
import fc from 'fast-check'
import ipaddr from 'ipaddr.js'
import { applyDelta } from '@warren/protocol'
import { buildMeshRecords, createMeshRecordStore, ipv6Nibbles, reverseName } from '../src/dns/records.js'
import { testNetmap, testPeer, type TestHost } from '../src/testing.js'

const self: TestHost = { name: 'laptop', ipv4: '100.64.0.1', ipv6: 'fd7a:115c:a1e0:ab12::1' }
const db: TestHost = { name: 'db', ipv4: '100.64.0.2', ipv6: 'fd7a:115c:a1e0:ab12::2' }
const web: TestHost = { name: 'web-1', ipv4: '100.100.3.4', ipv6: 'fd7a:115c:a1e0:ab12:0:0:3:4' }
const map = testNetmap(self, [db, web])

t.test('A and AAAA for self and peers, names case-insensitive, trailing dot tolerated', async t => {
  const r = buildMeshRecords(map)
  t.equal(r.size, 3)
  t.same(r.resolve('db.warren.internal', 'A'), { rcode: 'NOERROR', answers: [{ name: 'db.warren.internal', type: 'A', ttl: 30, data: '100.64.0.2' }], authorities: [] })
  t.same(r.resolve('laptop.warren.internal', 'AAAA')?.answers.map(a => a.data), ['fd7a:115c:a1e0:ab12::1'])
  const upper = r.resolve('WEB-1.Warren.Internal.', 'A')
  t.equal(upper?.rcode, 'NOERROR')
  t.equal(upper?.answers[0]?.name, 'WEB-1.Warren.Internal.', 'the answer echoes the name as asked')
  t.same(upper?.answers.map(a => a.data), ['100.100.3.4'])
  t.same(r.resolve('db.warren.internal', 'ANY')?.answers.map(a => a.type), ['A', 'AAAA'])
  t.equal(r.host('DB.warren.internal.')?.ipv4, '100.64.0.2')
})

t.test('unknown names in the mesh domain are NXDOMAIN with the SOA; other names are not ours', async t => {
  const r = buildMeshRecords(map)
  for (const name of ['nope.warren.internal', 'x.db.warren.internal', 'db.warren.internal.evil']) {
    const a = r.resolve(name, 'A')
    if (name.endsWith('.evil')) { t.equal(a, undefined, `${name} is forwarded`); continue }
    t.equal(a?.rcode, 'NXDOMAIN', name)
    t.equal(a?.authorities[0]?.type, 'SOA')
    t.equal(a?.authorities[0]?.name, 'warren.internal')
  }
  t.equal(r.resolve('example.com', 'A'), undefined)
  t.equal(r.resolve('internal', 'A'), undefined)
  t.equal(r.resolve('warren.internal', 'A')?.rcode, 'NOERROR', 'the apex exists')
  t.equal(r.resolve('warren.internal', 'SOA')?.answers[0]?.type, 'SOA')
})

t.test('other types of a known name: NODATA (NOERROR, no answers, SOA in authority)', async t => {
  const r = buildMeshRecords(map)
  for (const type of ['MX', 'TXT', 'PTR', 'UNKNOWN_65']) {
    const a = r.resolve('db.warren.internal', type)
    t.equal(a?.rcode, 'NOERROR', type)
    t.same(a?.answers, [], type)
    t.equal(a?.authorities[0]?.type, 'SOA', type)
  }
})

t.test('PTR for mesh addresses in in-addr.arpa and ip6.arpa; unknown mesh addresses NXDOMAIN', async t => {
  const r = buildMeshRecords(map)
  t.equal(reverseName('100.64.0.2'), '2.0.64.100.in-addr.arpa')
  t.same(r.resolve('2.0.64.100.in-addr.arpa', 'PTR')?.answers.map(a => a.data), ['db.warren.internal'])
  t.same(r.resolve('4.3.100.100.IN-ADDR.ARPA.', 'PTR')?.answers.map(a => a.data), ['web-1.warren.internal'])
  t.same(r.resolve(reverseName('fd7a:115c:a1e0:ab12::3:4'), 'PTR')?.answers.map(a => a.data), ['web-1.warren.internal'])
  t.same(r.resolve(reverseName('fd7a:115c:a1e0:ab12::1'), 'PTR')?.answers.map(a => a.data), ['laptop.warren.internal'])
  t.equal(r.resolve('9.0.64.100.in-addr.arpa', 'PTR')?.rcode, 'NXDOMAIN', 'unknown address in 100.64.0.0/10')
  t.equal(r.resolve(reverseName('fd7a:115c:a1e0:ab12::99'), 'PTR')?.rcode, 'NXDOMAIN', 'unknown address in the mesh /48')
  t.equal(r.resolve('0.64.100.in-addr.arpa', 'PTR')?.rcode, 'NOERROR', 'a partial reverse name is NODATA')
  t.equal(r.resolve('1.0.0.10.in-addr.arpa', 'PTR'), undefined, 'not a mesh address: forwarded')
  t.equal(r.resolve('1.0.0.100.in-addr.arpa', 'PTR'), undefined, '100.0.0.0/10 is not the mesh range')
  t.equal(r.resolve(reverseName('2001:db8::1'), 'PTR'), undefined, 'another /48: forwarded')
})

t.test('a peer absent from the map (not visible to this node) gets NXDOMAIN, by name and address', async t => {
  const r = buildMeshRecords(testNetmap(self, [db]))
  t.equal(r.resolve('web-1.warren.internal', 'A')?.rcode, 'NXDOMAIN')
  t.equal(r.resolve('4.3.100.100.in-addr.arpa', 'PTR')?.rcode, 'NXDOMAIN')
})

t.test('the store swaps the whole record set on each map: answers follow deltas', async t => {
  const store = createMeshRecordStore()
  t.equal(store.current(), undefined, 'no map yet: nothing is ours')
  const first = store.update(map)
  t.equal(store.current()?.resolve('db.warren.internal', 'A')?.rcode, 'NOERROR')
  const after = applyDelta(map, { type: 'delta', seq: 2, peersRemoved: ['db'], peersChanged: [testPeer({ name: 'cache', ipv4: '100.64.0.9', ipv6: 'fd7a:115c:a1e0:ab12::9' })] })
  const second = store.update(after)
  t.ok(second!.serial > first!.serial, 'the SOA serial grows')
  t.equal(store.current()?.resolve('db.warren.internal', 'A')?.rcode, 'NXDOMAIN')
  t.same(store.current()?.resolve('cache.warren.internal', 'A')?.answers.map(a => a.data), ['100.64.0.9'])
  t.equal(first!.resolve('db.warren.internal', 'A')?.rcode, 'NOERROR', 'an old set in use by a query is unchanged')
  store.clear()
  t.equal(store.current(), undefined)
  store.update({ ...map, dns: { domain: 'warren.internal', magicDns: false } })
  t.equal(store.current(), undefined, 'MagicDNS off in the map: nothing is answered locally')
})

t.test('another domain from the map; bad names and addresses are left out, not served broken', async t => {
  const r = buildMeshRecords(testNetmap(self, [db, { name: 'Bad_Name', ipv4: '100.64.0.7', ipv6: 'x' }, { name: 'noaddr', ipv4: 'nope', ipv6: 'nope' }], 'Corp.Example.'))
  t.equal(r.domain, 'corp.example')
  t.equal(r.skipped, 1)
  t.equal(r.resolve('db.corp.example', 'A')?.rcode, 'NOERROR')
  t.equal(r.resolve('db.warren.internal', 'A'), undefined)
  t.same(r.resolve('noaddr.corp.example', 'A')?.answers, [], 'a name without a valid address is NODATA')
})

t.test('ipv6Nibbles expands every IPv6 spelling and refuses junk', async t => {
  t.equal(ipv6Nibbles('::1'), '0'.repeat(31) + '1')
  t.equal(ipv6Nibbles('fd7a:115c:a1e0::53'), 'fd7a115ca1e0' + '0'.repeat(16) + '0053')
  t.equal(ipv6Nibbles('1:2:3:4:5:6:7:8'), '00010002000300040005000600070008')
  t.equal(ipv6Nibbles('::'), '0'.repeat(32))
  t.equal(ipv6Nibbles('FD7A::'), 'fd7a' + '0'.repeat(28))
  for (const bad of ['', ':', '1:', ':1::', '1:::2', '1::2::3', '1:2:3:4:5:6:7:8:9', '1:2:3:4::5:6:7:8', '12345::', '::ffff:1.2.3.4', 'g::1', '1:2:3:4:5:6:7', '1:2:3:4:5:6:7:8:']) t.equal(ipv6Nibbles(bad), undefined, bad)
  fc.assert(fc.property(fc.ipV6().filter(a => !a.includes('.')), a => {
    const want = Buffer.from(ipaddr.IPv6.parse(a).toByteArray()).toString('hex')
    return ipv6Nibbles(a) === want && ipv6Nibbles(a.toUpperCase()) === want
  }), { numRuns: 2000 })
})

t.test('10,000 peers build quickly (figure printed, not asserted)', async t => {
  const peers: TestHost[] = []
  for (let i = 0; i < 10_000; i++) {
    peers.push({ name: `node-${i}`, ipv4: `100.${64 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`, ipv6: `fd7a:115c:a1e0:ab12::${i.toString(16)}` })
  }
  const big = testNetmap(self, peers)
  buildMeshRecords(big) // warm up the JIT
  const start = process.hrtime.bigint()
  const r = buildMeshRecords(big)
  const ms = Number(process.hrtime.bigint() - start) / 1e6
  t.comment(`built the record set of 10,001 hosts in ${ms.toFixed(1)} ms`)
  t.equal(r.size, 10_001)
  t.same(r.resolve('node-9999.warren.internal', 'A')?.answers.map(a => a.data), ['100.64.39.15'])
  const ptrStart = process.hrtime.bigint()
  t.same(r.resolve(reverseName('fd7a:115c:a1e0:ab12::270f'), 'PTR')?.answers.map(a => a.data), ['node-9999.warren.internal'])
  t.comment(`the first PTR query (builds the address index) took ${(Number(process.hrtime.bigint() - ptrStart) / 1e6).toFixed(1)} ms`)
})
