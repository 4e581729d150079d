import t from 'tap'
import { generateWireGuardKeyPair, newAllocationId, type RelayGrant, type RelayRevoke, type RelayInfo } from '@warren/protocol'
import { startWith, connectReady, waitUntil, type MapTestClient, type TestNode } from './map-harness.js'
import type { RelayBackend } from '../src/relay/index.js'

/**
 * The relay broker through the real map protocol: a node asks for a relay toward a peer,
 * both nodes of the pair get their side; what the policy forbids is refused; a policy or
 * node change that ends the pair releases it at the relay and revokes it to both.
 */

interface FakeBackend extends RelayBackend {
  live: Map<string, { nodeKeys: [string, string], expiresAt: number }>
  released: string[]
}

function fakeBackend (info: Partial<RelayInfo> = {}): FakeBackend {
  const live = new Map<string, { nodeKeys: [string, string], expiresAt: number }>()
  const released: string[] = []
  let port = 40000
  return {
    live,
    released,
    info: { id: 'embedded', udp: '198.51.100.1:3479', key: generateWireGuardKeyPair().publicKey, ...info },
    async allocate (req) {
      const id = newAllocationId()
      live.set(id, { ...req })
      return { id, sides: [{ port: ++port }, { port: ++port }] }
    },
    renew (id, expiresAt) {
      const a = live.get(id)
      if (a === undefined) return false
      a.expiresAt = expiresAt
      return true
    },
    async release (id) {
      if (live.delete(id)) released.push(id)
    },
    endpointOf: (p, family) => family === 6 && info.udp6 !== undefined ? `[2001:db8::1]:${p}` : `198.51.100.1:${p}`
  }
}

const relayMsgs = (c: MapTestClient): Array<RelayGrant | RelayRevoke> => c.messages.filter(m => m.type === 'relay-grant' || m.type === 'relay-revoke') as unknown as Array<RelayGrant | RelayRevoke>
const last = (c: MapTestClient): RelayGrant | RelayRevoke | undefined => relayMsgs(c).at(-1)
const request = (c: MapTestClient, peer: string): void => c.send(JSON.stringify({ type: 'relay-request', peer }))
const release = (c: MapTestClient, peer: string): void => c.send(JSON.stringify({ type: 'relay-release', peer }))

t.test('a request grants both sides of the pair; the map lists the relay', async t => {
  const backend = fakeBackend()
  const nat = { stun: [backend.info.udp!], relays: [backend.info] }
  const { srv, nodes: [a, b] } = await startWith(t, ['a', 'b'], { nat, relay: { backends: [backend] } })
  const ca = await connectReady(srv.url, a!)
  const cb = await connectReady(srv.url, b!)
  t.same(ca.netmap?.nat, nat, 'the full map carries the NAT config')
  request(ca, b!.node.id)
  await waitUntil(() => last(ca)?.type === 'relay-grant' && last(cb)?.type === 'relay-grant', 'grants to both')
  const ga = last(ca) as RelayGrant
  const gb = last(cb) as RelayGrant
  t.equal(ga.allocation, gb.allocation, 'one allocation for the pair')
  t.equal(ga.peer, b!.node.wgKey)
  t.equal(gb.peer, a!.node.wgKey)
  t.not(ga.endpoint, gb.endpoint, 'each side has its own port')
  t.equal(ga.relayKey, backend.info.key)
  const alloc = backend.live.get(ga.allocation)!
  t.same([...alloc.nodeKeys].sort(), [a!.node.wgKey, b!.node.wgKey].sort())

  // Asking again (by WireGuard key, from the other side) renews the same allocation.
  const before = relayMsgs(ca).length
  request(cb, a!.node.wgKey)
  await waitUntil(() => relayMsgs(ca).length > before, 'a renewed grant')
  t.equal((last(ca) as RelayGrant).allocation, ga.allocation)
  t.equal(backend.live.size, 1)
})

t.test('a dual-stack relay: the pair binds over the family both nodes have, IPv4 first; no common family is refused clearly', async t => {
  const backend = fakeBackend({ udp6: '[2001:db8::1]:3479' })
  const v4 = ['203.0.113.5:41641', '192.168.1.5:41641']
  const v6 = ['[2001:db8:5::5]:41641']
  const nat = { stun: [], relays: [backend.info] }
  const { srv, nodes: [dual, only4, only6, only6b, ula] } = await startWith(t, ['dual', 'only4', 'only6', 'only6b', 'ula'], { nat, relay: { backends: [backend] } })
  const cd = await connectReady(srv.url, dual!, { endpoints: [...v4, ...v6] })
  const c4 = await connectReady(srv.url, only4!, { endpoints: v4 })
  const c6 = await connectReady(srv.url, only6!, { endpoints: v6 })
  const c6b = await connectReady(srv.url, only6b!, { endpoints: ['[2001:db8:6::6]:41641'] })
  const cu = await connectReady(srv.url, ula!, { endpoints: ['192.168.1.9:41641', '[fd00::9]:41641'] })
  t.teardown(async () => { await cd.close(); await c4.close(); await c6.close(); await c6b.close(); await cu.close() })
  t.same(cd.netmap?.nat?.relays.map(r => r.udp6), ['[2001:db8::1]:3479'], 'maps announce the IPv6 endpoint')

  const granted = async (x: MapTestClient, y: MapTestClient, peer: TestNode): Promise<string[]> => {
    request(x, peer.node.id)
    await waitUntil(() => last(x)?.type === 'relay-grant' && last(y)?.type === 'relay-grant', 'grants to both')
    return [(last(x) as RelayGrant).endpoint, (last(y) as RelayGrant).endpoint]
  }
  t.match(await granted(cd, c4, only4!), [/^198\.51\.100\.1:/, /^198\.51\.100\.1:/], 'dual-stack and IPv4-only: both sides over IPv4')
  t.match(await granted(cd, c6, only6!), [/^\[2001:db8::1\]:/, /^\[2001:db8::1\]:/], 'dual-stack and IPv6-only: both over IPv6')
  t.match(await granted(c6, c6b, only6b!), [/^\[2001:db8::1\]:/, /^\[2001:db8::1\]:/], 'two IPv6-only nodes: over IPv6')
  t.equal(backend.live.size, 3)

  request(c4, only6!.node.id)
  await waitUntil(() => last(c4)?.type === 'relay-revoke', 'the refusal')
  const no = last(c4) as RelayRevoke
  t.equal(no.code, 'no_common_family')
  t.match(no.message, /this node has IPv4, the peer has IPv6/, 'saying which families each side has')
  t.equal(backend.live.size, 3, 'and allocating nothing')

  request(cu, only6!.node.id)
  await waitUntil(() => last(cu)?.type === 'relay-revoke', 'the refusal of a node whose IPv6 is unique local only')
  t.match(last(cu), { code: 'no_common_family', message: /this node has IPv4, the peer has IPv6/ }, 'a unique-local address does not reach a relay\'s global IPv6 address')
})

t.test('an IPv4-only relay refuses two IPv6-only nodes; the IPv6 relay beside it serves them', async t => {
  const only4 = fakeBackend()
  const { srv, nodes: [a, b] } = await startWith(t, ['a', 'b'], { relay: { backends: [only4] } })
  const ca = await connectReady(srv.url, a!, { endpoints: ['[2001:db8:5::5]:41641'] })
  const cb = await connectReady(srv.url, b!, { endpoints: ['[2001:db8:6::6]:41641'] })
  t.teardown(async () => { await ca.close(); await cb.close() })
  request(ca, b!.node.id)
  await waitUntil(() => last(ca)?.type === 'relay-revoke', 'the refusal')
  t.match(last(ca), { code: 'no_common_family', message: /embedded: IPv4;/ }, 'naming the relay\'s families')
  const dual = fakeBackend({ id: 'dual', udp6: '[2001:db8::1]:3479' })
  srv.service.relays.addBackend(dual)
  request(ca, b!.node.id)
  await waitUntil(() => last(ca)?.type === 'relay-grant', 'a grant')
  t.match((last(ca) as RelayGrant).endpoint, /^\[2001:db8::1\]:/, 'over IPv6 at the relay that has it')
  t.equal(dual.live.size, 1)
  t.equal(only4.live.size, 0)
})

t.test('a pair is freed at the relay once neither node holds it; a request after that allocates again', async t => {
  const backend = fakeBackend()
  const { srv, nodes: [a, b] } = await startWith(t, ['a', 'b'], { relay: { backends: [backend] } })
  const ca = await connectReady(srv.url, a!)
  const cb = await connectReady(srv.url, b!)
  request(ca, b!.node.id)
  await waitUntil(() => last(ca)?.type === 'relay-grant' && last(cb)?.type === 'relay-grant', 'grants to both')
  const id = (last(ca) as RelayGrant).allocation
  request(cb, a!.node.wgKey)
  await waitUntil(() => relayMsgs(cb).filter(m => m.type === 'relay-grant').length === 2, 'B holds it too')

  release(ca, b!.node.wgKey)
  release(ca, b!.node.wgKey)
  await waitUntil(() => srv.service.relays.pairs()[0]?.holders.size === 1, 'A no longer holds the pair')
  t.same(backend.released, [], 'B still holds the pair: nothing is freed')
  t.equal(relayMsgs(ca).filter(m => m.type === 'relay-revoke').length, 0, 'and nothing is revoked')
  t.equal(backend.live.size, 1)

  release(cb, a!.node.id)
  await waitUntil(() => backend.released.includes(id), 'freed at the relay')
  await waitUntil(() => last(ca)?.type === 'relay-revoke' && last(cb)?.type === 'relay-revoke', 'revoked to both')
  t.match(last(ca), { allocation: id, code: 'released', peer: b!.node.wgKey })
  t.equal(srv.service.relays.pairs().length, 0)
  t.equal(backend.live.size, 0, 'the relay ports are free')

  release(cb, a!.node.id)
  release(ca, 'no-such-node')
  request(ca, b!.node.id)
  await waitUntil(() => last(ca)?.type === 'relay-grant', 'a new grant')
  t.not((last(ca) as RelayGrant).allocation, id, 'a new allocation')
  t.equal(backend.live.size, 1)
})

t.test('a pair the policy does not allow is refused; a policy change revokes at the relay first', async t => {
  const backend = fakeBackend()
  const { srv, nodes: [a, b, c] } = await startWith(t, ['a', 'b', 'c'], { relay: { backends: [backend] } })
  srv.source.patch(a!.node.id, { tags: ['tag:x'] })
  srv.source.patch(b!.node.id, { tags: ['tag:x'] })
  srv.source.patch(c!.node.id, { tags: ['tag:y'] })
  const ca = await connectReady(srv.url, a!)
  const cb = await connectReady(srv.url, b!)
  request(ca, c!.node.id)
  await waitUntil(() => last(ca) !== undefined, 'an answer')
  t.match(last(ca), { type: 'relay-revoke', code: 'not_allowed', peer: c!.node.id })
  request(ca, 'no-such-node')
  await waitUntil(() => relayMsgs(ca).length === 2, 'a second answer')
  t.match(last(ca), { code: 'not_allowed' })
  t.equal(backend.live.size, 0, 'nothing was allocated')

  request(ca, b!.node.id)
  await waitUntil(() => last(cb)?.type === 'relay-grant', 'the grant')
  const id = (last(cb) as RelayGrant).allocation
  srv.source.patch(b!.node.id, { tags: ['tag:y'] })
  await waitUntil(() => last(ca)?.type === 'relay-revoke' && last(cb)?.type === 'relay-revoke', 'revocations')
  t.match(last(ca), { allocation: id, code: 'not_allowed', peer: b!.node.wgKey })
  t.same(backend.released, [id], 'released at the relay')
  t.equal(srv.service.relays.pairs().length, 0)
})

t.test('a deleted node loses its allocation; grants expire; requests are rate-limited', async t => {
  const backend = fakeBackend()
  const { srv, nodes: [a, b, c] } = await startWith(t, ['a', 'b', 'c'], { relay: { backends: [backend], grantTtlMs: 300, requestRate: { burst: 3, perSecond: 0.001 } } })
  const ca = await connectReady(srv.url, a!)
  const cb = await connectReady(srv.url, b!)
  request(ca, c!.node.id)
  await waitUntil(() => last(ca)?.type === 'relay-grant', 'a grant toward c')
  const toC = (last(ca) as RelayGrant).allocation
  srv.source.remove(c!.node.id)
  await waitUntil(() => backend.released.includes(toC), 'release on deletion')
  await waitUntil(() => last(ca)?.type === 'relay-revoke', 'a revocation')
  t.match(last(ca), { allocation: toC, code: 'node_gone' })

  request(ca, b!.node.id)
  await waitUntil(() => last(cb)?.type === 'relay-grant', 'a grant toward b')
  const toB = (last(cb) as RelayGrant).allocation
  await waitUntil(() => last(cb)?.type === 'relay-revoke', 'expiry')
  t.match(last(cb), { allocation: toB, code: 'expired' })
  t.ok(backend.released.includes(toB))

  request(ca, b!.node.id)
  await waitUntil(() => relayMsgs(ca).filter(m => m.type === 'relay-grant').length === 3, 'a third grant')
  request(ca, b!.node.id)
  await waitUntil(() => last(ca)?.type === 'relay-revoke' && (last(ca) as RelayRevoke).code === 'rate_limited', 'the rate limit')
})

t.test('a relay that runs only a TLS relay is listed in maps and never gets a kernel pair', async t => {
  const tlsOnly = fakeBackend()
  tlsOnly.info = { id: 'tls-only', key: tlsOnly.info.key, tls: 'https://198.51.100.2:443', tlsFingerprint: 'c'.repeat(64) }
  const { srv, nodes: [a, b] } = await startWith(t, ['a', 'b'])
  srv.service.relays.addBackend(tlsOnly)
  const ca = await connectReady(srv.url, a!)
  t.same(ca.netmap?.nat, { stun: [], relays: [tlsOnly.info] }, 'the map lists it, with no STUN server of its own')
  request(ca, b!.node.id)
  await waitUntil(() => last(ca) !== undefined, 'an answer')
  t.match(last(ca), { type: 'relay-revoke', code: 'no_relay' }, 'no UDP relay to allocate on')
  t.equal(tlsOnly.live.size, 0, 'nothing allocated on the TLS-only relay')

  const kernel = fakeBackend()
  kernel.info = { ...kernel.info, id: 'kernel' }
  srv.service.relays.addBackend(kernel)
  request(ca, b!.node.id)
  await waitUntil(() => last(ca)?.type === 'relay-grant', 'a grant once a kernel relay is there')
  t.equal((last(ca) as RelayGrant).relay, 'kernel', 'on the kernel relay, though the TLS-only one carries no pairs')
  t.equal(tlsOnly.live.size, 0)
})

t.test('without a relay, requests are refused and maps carry no NAT config', async t => {
  const { srv, nodes: [a, b] } = await startWith(t, ['a', 'b'])
  const ca = await connectReady(srv.url, a!)
  t.equal(ca.netmap?.nat, undefined)
  request(ca, b!.node.id)
  await waitUntil(() => last(ca) !== undefined, 'an answer')
  t.match(last(ca), { type: 'relay-revoke', code: 'no_relay' })
  t.notOk(ca.isClosed(), 'the session stays open')
})
