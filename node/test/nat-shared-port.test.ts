import t from 'tap'
import dgram from 'node:dgram'
import type os from 'node:os'
import { encodeControl, encodeStunBindingResponse, ControlKind } from '@warren/protocol'
import { openSystemSharedPort } from '../src/nat/shared-port.js'
import type { SharedPortRules } from '../src/engine/types.js'

/**
 * SystemSharedPort's socket side, on loopback with the rules recorded instead of applied
 * (the rules themselves are tested in namespaces, test/test/nat-shared-port.test.ts): it
 * hands over STUN answers and control packets by kind and nothing else, sends with a TTL
 * for one packet only, and follows the host's addresses into the egress map.
 */
const iface = (address: string): os.NetworkInterfaceInfo => address.includes(':')
  ? { address, netmask: 'ffff:ffff:ffff:ffff::', family: 'IPv6', scopeid: 0, mac: '00:00:00:00:00:00', internal: false, cidr: `${address}/64` }
  : { address, netmask: '255.255.255.0', family: 'IPv4', mac: '00:00:00:00:00:00', internal: false, cidr: `${address}/24` }

t.test('packets by kind, sends, TTL per packet, egress following the interfaces', async t => {
  let table: NodeJS.Dict<os.NetworkInterfaceInfo[]> = { eth0: [iface('192.0.2.10')], wg0: [iface('100.64.0.5')] }
  const applied: Array<SharedPortRules | undefined> = []
  const port = await openSystemSharedPort({ wgPort: 41641, meshAddress: '127.0.0.1', meshInterface: 'wg0', interfaces: () => table, applyRules: async r => { applied.push(r) } })
  t.teardown(port.close)
  t.same(applied, [{ wgPort: 41641, controlAddress: '127.0.0.1', controlPort: port.controlPort, egress: { eth0: '192.0.2.10' } }], 'rules put in force at open, the mesh interface no egress')

  const peer = dgram.createSocket('udp4')
  await new Promise<void>(resolve => peer.bind(0, '127.0.0.1', resolve))
  t.teardown(() => { peer.close() })
  const got: string[] = []
  port.onPacket('stun', p => got.push(`stun ${p.from.port}`))
  const off = port.onPacket('control', p => got.push(`control ${p.data.length}`))
  for (const b of [Buffer.from('01000000aaaa', 'hex'), encodeControl(ControlKind.DiscoPing, new Uint8Array(3)), encodeStunBindingResponse(new Uint8Array(12), { address: '1.2.3.4', port: 5 }), Buffer.from('junk')]) {
    peer.send(b, port.controlPort, '127.0.0.1')
  }
  await new Promise<void>(resolve => { const i = setInterval(() => { if (got.length >= 2) { clearInterval(i); resolve() } }, 5) })
  t.same(got.sort(), [`control 8`, `stun ${peer.address().port}`], 'STUN and control by kind; WireGuard-shaped and junk dropped')
  off()

  const received = new Promise<Buffer>(resolve => peer.once('message', m => resolve(m)))
  await port.send(Buffer.from('hi'), { address: '127.0.0.1', port: peer.address().port }, { ttl: 1 })
  t.equal((await received).toString(), 'hi', 'a TTL-limited send goes out (loopback is one hop)')

  t.equal(await port.refresh(), false, 'no change, no apply')
  table = { eth0: [iface('192.0.2.11')], eth1: [iface('198.51.100.2'), iface('198.51.100.3')], wg0: [iface('100.64.0.5')] }
  t.equal(await port.refresh(), true)
  t.same(applied.at(-1)?.egress, { eth0: '192.0.2.11', eth1: '198.51.100.2' }, 'a changed address and a new interface (its first address)')
  await port.close()
  await t.rejects(port.send(Buffer.from('x'), { address: '127.0.0.1', port: 9 }), { code: 'shared_port_closed' })
})

t.test('an address the host does not have is a clear error', async t => {
  await t.rejects(openSystemSharedPort({ wgPort: 41641, meshAddress: '192.0.2.77', meshInterface: 'wg0', applyRules: async () => {} }), { code: 'shared_port_failed', message: /mesh address 192.0.2.77/ })
})

t.test('IPv6: a second socket on the mesh IPv6 address, same port; rules and sends for both families', async t => {
  let table: NodeJS.Dict<os.NetworkInterfaceInfo[]> = { eth0: [iface('192.0.2.10'), iface('2001:db8::10')], wg0: [iface('100.64.0.5'), iface('fd7a:115c:a1e0::5')] }
  const applied: Array<SharedPortRules | undefined> = []
  const port = await openSystemSharedPort({ wgPort: 41641, meshAddress: '127.0.0.1', meshAddress6: '0:0:0:0:0:0:0:1', meshInterface: 'wg0', interfaces: () => table, applyRules: async r => { applied.push(r) } })
  t.teardown(port.close)
  t.same(applied, [{ wgPort: 41641, controlAddress: '127.0.0.1', controlPort: port.controlPort, controlAddress6: '::1', egress: { eth0: '192.0.2.10' }, egress6: { eth0: '2001:db8::10' } }],
    'IPv6 rules in the short form nft prints, with their own egress map')
  t.equal(port.meshAddress6, '0:0:0:0:0:0:0:1')

  const peer = dgram.createSocket('udp6')
  await new Promise<void>(resolve => peer.bind(0, '::1', resolve))
  t.teardown(() => { peer.close() })
  const got = new Promise<string>(resolve => port.onPacket('control', p => resolve(`${p.from.address} ${p.from.port}`)))
  peer.send(encodeControl(ControlKind.DiscoPing, new Uint8Array(3)), port.controlPort, '::1')
  t.equal(await got, `::1 ${peer.address().port}`, 'a control packet to the IPv6 socket is handed over with its IPv6 source')
  const received = new Promise<Buffer>(resolve => peer.once('message', m => resolve(m)))
  await port.send(Buffer.from('hi6'), { address: '::1', port: peer.address().port }, { ttl: 1 })
  t.equal((await received).toString(), 'hi6', 'an IPv6 destination is sent from the IPv6 socket, TTL-limited too')

  table = { eth0: [iface('192.0.2.10'), iface('2001:db8::11')], wg0: [iface('100.64.0.5')] }
  t.equal(await port.refresh(), true, 'a changed IPv6 address alone is a change')
  t.same(applied.at(-1)?.egress6, { eth0: '2001:db8::11' })
  t.same(applied.at(-1)?.egress, { eth0: '192.0.2.10' })
})

t.test('a mesh IPv6 address that cannot be bound leaves the port IPv4 only, and says so', async t => {
  const why: string[] = []
  const applied: Array<SharedPortRules | undefined> = []
  const port = await openSystemSharedPort({
    wgPort: 41641, meshAddress: '127.0.0.1', meshAddress6: '2001:db8::77', meshInterface: 'wg0', interfaces: () => ({}),
    applyRules: async r => { applied.push(r) }, onIpv6Unavailable: e => why.push(e.message)
  })
  t.teardown(port.close)
  t.equal(why.length, 1, 'the reason is reported')
  t.equal(port.meshAddress6, undefined)
  t.equal(applied[0]?.controlAddress6, undefined, 'no IPv6 rules')
  t.equal(applied[0]?.egress6, undefined)
  await t.rejects(port.send(Buffer.from('x'), { address: '2001:db8::1', port: 9 }), { code: 'no_ipv6', message: /no IPv6 socket/ })
})
