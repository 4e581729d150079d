import t, { type Test } from 'tap'
import { createSocket, type Socket } from 'node:dgram'
import { once } from 'node:events'
import {
  generateWireGuardKeyPair, encodeRelayBind, openRelayBindAck, encodeStunBindingRequest, parseStunBindingResponse,
  type WireGuardKeyPair
} from '@warren/protocol'
import { startUdpRelay, renderElements, renderRelayTable, type UdpRelay } from '../src/index.js'
import { createFakeRelayFirewall, createFakeSysctls, type FakeRelayFirewall } from '../src/testing.js'

const relayKey = generateWireGuardKeyPair()
const a = generateWireGuardKeyPair()
const b = generateWireGuardKeyPair()

async function udp (host = '127.0.0.1'): Promise<Socket> {
  const s = createSocket(host.includes(':') ? 'udp6' : 'udp4')
  s.bind(0, host)
  await once(s, 'listening')
  return s
}

async function start (t: Test, extra: Partial<Parameters<typeof startUdpRelay>[0]> = {}): Promise<{ relay: UdpRelay, fw: FakeRelayFirewall }> {
  const fw = createFakeRelayFirewall()
  const relay = await startUdpRelay({ key: relayKey, port: 0, listenHost: '127.0.0.1', firewall: fw, sysctls: false, portRange: { first: 47000, last: 47999 }, ...extra })
  t.teardown(() => relay.close())
  return { relay, fw }
}

function bindPacket (node: WireGuardKeyPair, allocation: string, timestampMs = Date.now()): Uint8Array {
  return encodeRelayBind({ allocation, timestampMs, nodePrivateKey: node.privateKey, nodePublicKey: node.publicKey, relayPublicKey: relayKey.publicKey })
}

/** bindFrom sends a bind from a socket and waits for the relay's ack, or undefined after waitMs. */
async function bindFrom (s: Socket, port: number, packet: Uint8Array, node: WireGuardKeyPair, waitMs = 2000): Promise<ReturnType<typeof openRelayBindAck>> {
  const got = new Promise<ReturnType<typeof openRelayBindAck>>(resolve => {
    const timer = setTimeout(() => { s.off('message', on); resolve(undefined) }, waitMs)
    function on (msg: Buffer): void {
      const ack = openRelayBindAck(msg, relayKey.publicKey, node.privateKey)
      if (ack === undefined) return
      clearTimeout(timer)
      s.off('message', on)
      resolve(ack)
    }
    s.on('message', on)
  })
  s.send(packet, port, s.address().family === 'IPv6' ? '::1' : '127.0.0.1')
  return await got
}

t.test('the control port answers STUN with the sender address', async t => {
  const { relay } = await start(t)
  const s = await udp()
  t.teardown(() => s.close())
  s.send(encodeStunBindingRequest(new Uint8Array(12).fill(7)), relay.port, '127.0.0.1')
  const [msg] = await once(s, 'message') as [Buffer]
  t.same(parseStunBindingResponse(msg)?.mapped, { address: '127.0.0.1', port: s.address().port })
  t.equal(relay.stats().stun, 1)
})

t.test('binds from both sides install the forwards both ways and are acked with the observed address', async t => {
  const { relay, fw } = await start(t)
  const alloc = await relay.allocate({ nodeKeys: [a.publicKey, b.publicKey], expiresAt: Date.now() + 60_000 })
  const [pa, pb] = alloc.sides.map(s => s.port) as [number, number]
  t.same([...fw.ports()].sort(), [pa, pb].sort(), 'both ports are in the table')
  const sa = await udp()
  const sb = await udp()
  t.teardown(() => { sa.close(); sb.close() })
  const ackA = await bindFrom(sa, pa, bindPacket(a, alloc.id), a)
  t.same(ackA?.observed, { address: '127.0.0.1', port: sa.address().port })
  t.equal(ackA?.peerBound, false, 'A\'s ack says B has not bound yet')
  t.equal(fw.forward(pa), undefined, 'nothing is forwarded while one side is unbound')
  // B's bind completes the pair: B's ack says so, and A hears it at once (an ack to its last bind).
  const told = new Promise<ReturnType<typeof openRelayBindAck>>(resolve => {
    sa.on('message', msg => { const ack = openRelayBindAck(msg, relayKey.publicKey, a.privateKey); if (ack?.peerBound === true) resolve(ack) })
  })
  const ackB = await bindFrom(sb, pb, bindPacket(b, alloc.id), b)
  t.equal(ackB?.peerBound, true, 'B\'s ack says A is bound')
  t.same((await told)?.bindNonce, ackA?.bindNonce, 'A is told, answering its own bind')
  sa.removeAllListeners('message')
  t.same(fw.forward(pa), { port: pa, outPort: pb, to: { address: '127.0.0.1', port: sb.address().port } })
  t.same(fw.forward(pb), { port: pb, outPort: pa, to: { address: '127.0.0.1', port: sa.address().port } })

  // A moves (its NAT remapped): only the forward toward A changes.
  const sa2 = await udp()
  t.teardown(() => sa2.close())
  await bindFrom(sa2, pa, bindPacket(a, alloc.id), a)
  t.equal(fw.forward(pb)?.to.port, sa2.address().port)
  t.same(fw.changes.at(-1)?.setForwards?.map(f => f.port), [pb])

  await relay.release(alloc.id)
  t.equal(fw.ports().size, 0, 'release removes the ports and forwards')
  t.equal(fw.forward(pa), undefined)
  t.equal(relay.allocations().length, 0)
})

t.test('IPv6: a relay listening on :: takes IPv6 binds and forwards to IPv6; a pair is of one family', async t => {
  const { relay, fw } = await start(t, { listenHost: '::' })
  const stun = await udp('::1')
  t.teardown(() => stun.close())
  stun.send(encodeStunBindingRequest(new Uint8Array(12).fill(7)), relay.port, '::1')
  const [msg] = await once(stun, 'message') as [Buffer]
  t.same(parseStunBindingResponse(msg)?.mapped, { address: '::1', port: stun.address().port }, 'STUN over IPv6 names the IPv6 source')

  const alloc = await relay.allocate({ nodeKeys: [a.publicKey, b.publicKey], expiresAt: Date.now() + 60_000 })
  const [pa, pb] = alloc.sides.map(s => s.port) as [number, number]
  const sa = await udp('::1')
  const sb4 = await udp()
  const sb = await udp('::1')
  t.teardown(() => { sa.close(); sb4.close(); sb.close() })
  t.same((await bindFrom(sa, pa, bindPacket(a, alloc.id), a))?.observed, { address: '::1', port: sa.address().port }, 'A binds over IPv6')
  t.equal(await bindFrom(sb4, pb, bindPacket(b, alloc.id), b, 300), undefined, 'B over IPv4 is refused: the kernel cannot forward between families')
  t.equal(relay.stats().refused.family, 1)
  t.equal(fw.forward(pa), undefined)
  t.ok(await bindFrom(sb, pb, bindPacket(b, alloc.id), b), 'B over IPv6 is taken')
  t.same(fw.forward(pa), { port: pa, outPort: pb, to: { address: '::1', port: sb.address().port } }, 'forwards to IPv6 addresses, both ways')
  t.same(fw.forward(pb), { port: pb, outPort: pa, to: { address: '::1', port: sa.address().port } })
})

t.test('dual-stack: one relay announces an IPv4 and an IPv6 endpoint and forwards a pair of each family', async t => {
  const { relay, fw } = await start(t, { listenHost: '::', publicHost: '127.0.0.1', publicHost6: '::1' })
  t.equal(relay.endpoint, `127.0.0.1:${relay.port}`, 'the IPv4 endpoint (RelayInfo.udp)')
  t.equal(relay.endpoint6, `[::1]:${relay.port}`, 'and the IPv6 one (RelayInfo.udp6)')
  const pairs = [{ host: '127.0.0.1', family: 4 as const }, { host: '::1', family: 6 as const }]
  for (const { host, family } of pairs) {
    const alloc = await relay.allocate({ nodeKeys: [a.publicKey, b.publicKey], expiresAt: Date.now() + 60_000 })
    const [pa, pb] = alloc.sides.map(s => s.port) as [number, number]
    t.equal(relay.endpointOf(pa, family), family === 6 ? `[::1]:${pa}` : `127.0.0.1:${pa}`, `a grant over IPv${family} names the relay's IPv${family} address`)
    const sa = await udp(host)
    const sb = await udp(host)
    t.teardown(() => { sa.close(); sb.close() })
    t.ok(await bindFrom(sa, pa, bindPacket(a, alloc.id), a), `A binds over IPv${family}`)
    t.ok(await bindFrom(sb, pb, bindPacket(b, alloc.id), b), `B binds over IPv${family}`)
    t.same(fw.forward(pa)?.to, { address: host, port: sb.address().port }, `the IPv${family} pair forwards A -> B`)
    t.same(fw.forward(pb)?.to, { address: host, port: sa.address().port }, 'and B -> A')
  }
  t.equal(relay.endpointOf(40000), '127.0.0.1:40000', 'without a family: the IPv4 (or named) host')
})

t.test('dual-stack: an IPv6 public host that is no IPv6 address, or an IPv4 listen address, is refused with a clear error', async t => {
  const base = { key: relayKey, port: 0, firewall: createFakeRelayFirewall(), sysctls: false as const }
  await t.rejects(startUdpRelay({ ...base, publicHost: '127.0.0.1', publicHost6: '127.0.0.2' }), { code: 'invalid_input', message: /must be an IPv6 address/ })
  await t.rejects(startUdpRelay({ ...base, listenHost: '127.0.0.1', publicHost6: '::1' }), { code: 'invalid_input', message: /must listen on '::'/ })
})

t.test('binds are refused: wrong node, wrong side, other allocation, replayed, stale, expired, over the rate', async t => {
  const { relay, fw } = await start(t, { bindRate: { burst: 4, perSecond: 0.001 } })
  const alloc = await relay.allocate({ nodeKeys: [a.publicKey, b.publicKey], expiresAt: Date.now() + 60_000 })
  const other = await relay.allocate({ nodeKeys: [a.publicKey, b.publicKey], expiresAt: Date.now() + 60_000 })
  const [pa, pb] = alloc.sides.map(s => s.port) as [number, number]
  const s = await udp()
  t.teardown(() => s.close())
  const mallory = generateWireGuardKeyPair()
  t.equal(await bindFrom(s, pb, bindPacket(mallory, alloc.id), mallory, 300), undefined, 'a node that holds no grant')
  t.equal(await bindFrom(s, pb, bindPacket(a, alloc.id), a, 300), undefined, 'A on B\'s side')
  t.equal(await bindFrom(s, pa, bindPacket(a, other.id), a, 300), undefined, 'A with another allocation\'s id')
  t.equal(await bindFrom(s, pa, bindPacket(a, alloc.id, Date.now() - 120_000), a, 300), undefined, 'a stale timestamp')
  const good = bindPacket(a, alloc.id)
  t.ok(await bindFrom(s, pa, good, a), 'a good bind')
  t.equal(await bindFrom(s, pa, good, a, 300), undefined, 'the same bind replayed')
  t.equal(await bindFrom(s, pa, bindPacket(a, alloc.id), a, 300), undefined, 'over the rate limit')
  const st = relay.stats()
  t.same(st.refused, { malformed: 0, unsealed: 0, wrong_side: 3, stale: 1, replay: 1, rate: 1, expired: 0, family: 0 })
  t.equal(st.binds, 1)
  t.equal(fw.forward(pa), undefined)

  const soon = await relay.allocate({ nodeKeys: [a.publicKey, b.publicKey], expiresAt: Date.now() - 1 })
  // Refused as expired, or already swept away (the sweep runs every second): never acked.
  t.equal(await bindFrom(s, soon.sides[1].port, bindPacket(b, soon.id), b, 300), undefined, 'an expired allocation')
})

t.test('expired allocations are swept; renew extends them; close removes the table and restores sysctls', async t => {
  const fw = createFakeRelayFirewall()
  const sysctls = createFakeSysctls({ 'net/ipv4/ip_forward': '0', 'net/ipv4/conf/eth0/rp_filter': '2', 'net/ipv4/conf/all/send_redirects': '1' })
  const relay = await startUdpRelay({ key: relayKey, port: 0, listenHost: '127.0.0.1', firewall: fw, sysctls })
  t.equal(sysctls.values.get('net/ipv4/ip_forward'), '1')
  t.equal(sysctls.values.get('net/ipv4/conf/all/accept_local'), '1')
  t.equal(sysctls.values.get('net/ipv4/conf/eth0/rp_filter'), '0')
  t.equal(sysctls.values.get('net/ipv4/conf/all/send_redirects'), '0')
  const x = await relay.allocate({ nodeKeys: [a.publicKey, b.publicKey], expiresAt: Date.now() + 200 })
  const y = await relay.allocate({ nodeKeys: [a.publicKey, b.publicKey], expiresAt: Date.now() + 200 })
  t.ok(relay.renew(y.id, Date.now() + 60_000))
  t.notOk(relay.renew('no-such', 1))
  while (relay.allocation(x.id) !== undefined) await new Promise(resolve => setTimeout(resolve, 100))
  t.ok(relay.allocation(y.id), 'the renewed one stays')
  await relay.close()
  t.notOk(fw.isUp, 'the table is gone')
  t.equal(sysctls.values.get('net/ipv4/ip_forward'), '0')
  t.equal(sysctls.values.get('net/ipv4/conf/eth0/rp_filter'), '2')
  t.equal(sysctls.values.get('net/ipv4/conf/all/send_redirects'), '1')
  t.equal(sysctls.values.get('net/ipv4/conf/all/accept_local'), '0')
  await t.rejects(relay.allocate({ nodeKeys: [a.publicKey, b.publicKey], expiresAt: Date.now() + 1000 }), /stopped/)
})

t.test('nft text: table with the allocated chain; element changes replace a forward atomically', async t => {
  const table = renderRelayTable()
  t.match(table, /priority raw - 10/)
  t.match(table, /udp dport @ports jump allocated/)
  t.match(table, /@th,64,32 0x57524e01 return/)
  const old = { port: 40001, outPort: 40002, to: { address: '10.0.0.1', port: 1000 } }
  const next = { ...old, to: { address: '10.0.0.9', port: 2000 } }
  const text = renderElements({ setForwards: [next] }, p => p === 40001 ? old : undefined)
  t.equal(text, [
    'delete element inet warren_relay bound { 40001 }',
    'delete element inet warren_relay out_port { 40001 : 40002 }',
    'delete element inet warren_relay peer_addr { 40001 : 10.0.0.1 }',
    'delete element inet warren_relay peer_port { 40001 : 1000 }',
    'add element inet warren_relay out_port { 40001 : 40002 }',
    'add element inet warren_relay peer_addr { 40001 : 10.0.0.9 }',
    'add element inet warren_relay peer_port { 40001 : 2000 }',
    'add element inet warren_relay bound { 40001 }',
    ''
  ].join('\n'))
  t.match(table, /udp dport @bound6 notrack ip6 saddr set ip6 daddr .* ip6 daddr set udp dport map @peer_addr6 /, 'the IPv6 forward rule')
  const moved6 = { ...old, to: { address: '2001:db8::9', port: 2000 } }
  t.equal(renderElements({ setForwards: [moved6] }, p => p === 40001 ? old : undefined), [
    'delete element inet warren_relay bound { 40001 }',
    'delete element inet warren_relay out_port { 40001 : 40002 }',
    'delete element inet warren_relay peer_addr { 40001 : 10.0.0.1 }',
    'delete element inet warren_relay peer_port { 40001 : 1000 }',
    'add element inet warren_relay out_port { 40001 : 40002 }',
    'add element inet warren_relay peer_addr6 { 40001 : 2001:db8::9 }',
    'add element inet warren_relay peer_port { 40001 : 2000 }',
    'add element inet warren_relay bound6 { 40001 }',
    ''
  ].join('\n'), 'a forward that moves to IPv6 leaves the IPv4 set and map for the IPv6 ones')
})

t.test('sysctls for IPv6: forwarding on, router advertisements still taken; put back at close', async t => {
  const sysctls = createFakeSysctls({ 'net/ipv6/conf/all/forwarding': '0', 'net/ipv6/conf/eth0/accept_ra': '1', 'net/ipv6/conf/lo/accept_ra': '0' })
  const relay = await startUdpRelay({ key: relayKey, port: 0, listenHost: '::1', firewall: createFakeRelayFirewall(), sysctls })
  t.equal(sysctls.values.get('net/ipv6/conf/all/forwarding'), '1')
  t.equal(sysctls.values.get('net/ipv6/conf/eth0/accept_ra'), '2', 'an interface that took router advertisements still does (2: also when forwarding)')
  t.equal(sysctls.values.get('net/ipv6/conf/lo/accept_ra'), '0', 'one that did not is left alone')
  await relay.close()
  t.equal(sysctls.values.get('net/ipv6/conf/all/forwarding'), '0')
  t.equal(sysctls.values.get('net/ipv6/conf/eth0/accept_ra'), '1')

  const v4 = createFakeSysctls({ 'net/ipv6/conf/all/forwarding': '0' })
  const relay4 = await startUdpRelay({ key: relayKey, port: 0, listenHost: '127.0.0.1', firewall: createFakeRelayFirewall(), sysctls: v4 })
  t.teardown(() => relay4.close())
  t.equal(v4.values.get('net/ipv6/conf/all/forwarding'), '0', 'a relay on IPv4 alone leaves IPv6 forwarding as it was')
})
