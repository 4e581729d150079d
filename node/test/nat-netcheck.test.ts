import t from 'tap'
import { encodeStunBindingResponse, parseStunBindingRequest } from '@warren/protocol'
import { createFakeSharedPort, type FakeSharedPort } from '../src/testing.js'
import { resolveStunServers, runNetcheck, type Resolver } from '../src/nat/netcheck.js'

/** A fake STUN network: each server address answers with the mapping `mapFor` gives it. */
function stunNetwork (port: FakeSharedPort, mapFor: (server: string) => { address: string, port: number } | undefined): void {
  port.answer = s => {
    const req = parseStunBindingRequest(s.data)
    const mapped = mapFor(`${s.to.address}:${s.to.port}`)
    if (req === undefined || mapped === undefined) return undefined
    return [{ kind: 'stun', data: encodeStunBindingResponse(req.txid, mapped), from: s.to }]
  }
}

const URL = 'https://10.0.0.1:8443'

t.test('resolveStunServers: host-less entries are the controller URL\'s host; names resolve to one address per family', async t => {
  const table: Record<string, string[]> = { 'stun.example': ['192.0.2.9', '192.0.2.10'], 'dual.example': ['2001:db8::9', '192.0.2.7', '2001:db8::10'], 'none.example': [] }
  const got = await resolveStunServers([':3478', 'stun.example:3479', '[2001:db8::1]:3478', 'dual.example:3478', 'none.example:1', 'junk'], URL, async h => table[h] ?? [])
  t.same(got.map(g => [g.server, g.address]), [
    [':3478', { host: '10.0.0.1', port: 3478 }],
    ['stun.example:3479', { host: '192.0.2.9', port: 3479 }],
    ['[2001:db8::1]:3478', { host: '2001:db8::1', port: 3478 }],
    ['dual.example:3478', { host: '192.0.2.7', port: 3478 }],
    ['dual.example:3478', { host: '2001:db8::9', port: 3478 }],
    ['none.example:1', undefined],
    ['junk', undefined]
  ], 'an IPv6 literal is asked as it is; a name with both families is asked at one address of each')
  t.match(got[5]!.error, /none.example has no address/)
  t.match(got[6]!.error, /HOST:PORT/)
  const v6Url = await resolveStunServers([':3478'], 'https://[2001:db8::5]:8443')
  t.same(v6Url[0]!.address, { host: '2001:db8::5', port: 3478 }, 'a host-less entry of an IPv6 controller URL is asked over IPv6')
})

t.test('IPv4 and IPv6 servers get a verdict each', async t => {
  const port = createFakeSharedPort()
  // IPv4 behind a symmetric NAT; IPv6 with no NAT (the mapping is the host's own address)
  stunNetwork(port, s => s.startsWith('2001:') ? { address: '2001:db8:1::5', port: 41641 } : { address: '198.51.100.1', port: s.endsWith(':3478') ? 1000 : 2000 })
  const stunAt = (host: string): Resolver => async () => ['10.0.0.1', host]
  const servers = await resolveStunServers(['stun.example:3478', 'stun.example:3479'], URL, stunAt('2001:db8::1'))
  const r = await runNetcheck({ port, servers })
  t.equal(r.udp, true)
  t.equal(r.endpointIndependent, false, 'the IPv4 verdict is over the IPv4 servers alone')
  t.same(r.mappings, ['198.51.100.1:1000', '198.51.100.1:2000'])
  t.same(r.ipv6, { udp: true, mappings: ['[2001:db8:1::5]:41641'], endpointIndependent: true }, 'IPv6: both servers saw the host\'s own address')
  t.same(r.servers.map(s => s.address), ['10.0.0.1:3478', '[2001:db8::1]:3478', '10.0.0.1:3479', '[2001:db8::1]:3479'])
  t.ok(port.sent.some(s => s.to.address === '2001:db8::1'), 'requests went to the IPv6 address through the shared port')

  const v4only = await runNetcheck({ port, servers: await resolveStunServers([':3478'], URL) })
  t.equal(v4only.ipv6, undefined, 'no IPv6 server asked: no IPv6 verdict')

  // a port without IPv6 fails its IPv6 sends: IPv4 still answers
  stunNetwork(port, () => ({ address: '198.51.100.1', port: 41641 }))
  const send = port.send.bind(port)
  port.send = async (data, to, o) => { if (to.address.includes(':')) throw new Error('the shared port has no IPv6 socket'); await send(data, to, o) }
  const noV6 = await runNetcheck({ port, servers, timeoutMs: 300, retryMs: 100 })
  t.equal(noV6.udp, true)
  t.same(noV6.ipv6, { udp: false, mappings: [] })
  t.match(noV6.servers[1]!.error, /cannot send: the shared port has no IPv6 socket/)
})

t.test('one mapping from two servers: endpoint-independent', async t => {
  const port = createFakeSharedPort()
  stunNetwork(port, () => ({ address: '198.51.100.1', port: 41641 }))
  const servers = await resolveStunServers([':3478', ':3479'], URL)
  const r = await runNetcheck({ port, servers, now: () => new Date(0) })
  t.equal(r.udp, true)
  t.same(r.mappings, ['198.51.100.1:41641'])
  t.equal(r.endpointIndependent, true)
  t.equal(r.wgPort, 41641)
  t.equal(r.checkedAt, new Date(0).toISOString())
  t.same(r.servers.map(s => [s.server, s.address, s.mapped]), [[':3478', '10.0.0.1:3478', '198.51.100.1:41641'], [':3479', '10.0.0.1:3479', '198.51.100.1:41641']])
  t.ok(r.servers.every(s => typeof s.latencyMs === 'number' && s.latencyMs >= 0), 'a latency per server')
  t.ok(port.sent.every(s => s.to.address === '10.0.0.1'), 'requests go through the shared port')
})

t.test('different mappings: not endpoint-independent; one answer: unknown; none: no UDP', async t => {
  const port = createFakeSharedPort()
  stunNetwork(port, s => ({ address: '198.51.100.1', port: s.endsWith(':3478') ? 1000 : 2000 }))
  const servers = await resolveStunServers([':3478', ':3479'], URL)
  const sym = await runNetcheck({ port, servers })
  t.equal(sym.endpointIndependent, false)
  t.same(sym.mappings, ['198.51.100.1:1000', '198.51.100.1:2000'])

  stunNetwork(port, s => s.endsWith(':3478') ? { address: '198.51.100.1', port: 1000 } : undefined)
  const one = await runNetcheck({ port, servers, timeoutMs: 300, retryMs: 100 })
  t.equal(one.udp, true)
  t.equal(one.endpointIndependent, undefined, 'one answer cannot tell')
  t.match(one.servers[1]!.error, /no answer within 300 ms/)
  t.ok(port.sent.filter(s => s.to.port === 3479).length >= 2, 'an unanswered server is asked again')

  port.failSends = true
  const none = await runNetcheck({ port, servers, timeoutMs: 300, retryMs: 100 })
  t.equal(none.udp, false)
  t.same(none.mappings, [])
  t.match(none.servers[0]!.error, /cannot send: .*unreachable/)
})

t.test('answers to other requests (an old transaction) are not taken', async t => {
  const port = createFakeSharedPort()
  port.answer = s => [{ kind: 'stun', data: encodeStunBindingResponse(new Uint8Array(12), { address: '203.0.113.5', port: 9 }), from: s.to }]
  const r = await runNetcheck({ port, servers: await resolveStunServers([':3478'], URL), timeoutMs: 300, retryMs: 100 })
  t.equal(r.udp, false)
})
