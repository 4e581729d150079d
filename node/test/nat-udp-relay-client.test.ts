import t, { type Test } from 'tap'
import { generateWireGuardKeyPair, type RelayGrant, type RelayRevoke, type RelayRequest, type RelayRelease, type WireGuardKeyPair } from '@warren/protocol'
import { startUdpRelay, type UdpRelay } from '@warren/relay'
import { createFakeRelayFirewall } from '@warren/relay/testing'
import { createUdpRelayClient, type RelayControl } from '../src/index.js'
import { createFakeUdpRelayClient, createFakeLoopbackSharedPort } from '../src/testing.js'
import type { SharedPort } from '../src/nat/types.js'
import { relayAddresses, type HostResolver } from '../src/nat/relay-address.js'

async function loopbackSharedPort (t: Test): Promise<SharedPort> {
  const port = await createFakeLoopbackSharedPort()
  t.teardown(port.close)
  return port
}

/** Controller stands in for the broker: it allocates on the relay and grants both sides. */
function fakeController (relay: UdpRelay, nodes: Map<string, { control: RelayControl, deliver: (m: RelayGrant | RelayRevoke) => void }>, endpointHost?: string) {
  const sent: Array<{ from: string, msg: RelayRequest | RelayRelease }> = []
  let up = true
  const connected = new Set<() => void>()
  function controlFor (me: string): { control: RelayControl, deliver: (m: RelayGrant | RelayRevoke) => void } {
    const handlers = new Set<(m: RelayGrant | RelayRevoke) => void>()
    const control: RelayControl = {
      send (msg) {
        if (!up) return false
        sent.push({ from: me, msg })
        if (msg.type === 'relay-release') return true
        void (async () => {
          const existing = relay.allocations().find(a => a.sides.some(s => s.nodeKey === me) && a.sides.some(s => s.nodeKey === msg.peer))
          const a = existing ?? await relay.allocate({ nodeKeys: [me, msg.peer], expiresAt: Date.now() + 60_000 })
          for (const [i, side] of a.sides.entries()) {
            const other = a.sides[1 - i]!
            nodes.get(side.nodeKey)?.deliver({
              type: 'relay-grant', peer: other.nodeKey, peerId: 'id', relay: 'embedded', relayKey: relay.publicKey,
              endpoint: endpointHost === undefined ? relay.endpointOf(side.port) : `${endpointHost}:${side.port}`, allocation: a.id, expires: new Date(a.expiresAt).toISOString()
            })
          }
        })()
        return true
      },
      onMessage (h) { handlers.add(h); return () => { handlers.delete(h) } },
      onConnected (h) { connected.add(h); return () => { connected.delete(h) } }
    }
    return { control, deliver: m => { for (const h of handlers) h(m) } }
  }
  return {
    sent,
    controlFor,
    setUp (v: boolean) {
      up = v
      if (v) for (const h of connected) h()
    }
  }
}

/**
 * twoClients starts a relay on 1000 ports from `firstPort` and two nodes' clients (A and B)
 * behind a fake controller; `wrapA` may stand between A and its shared port.
 */
async function twoClients (t: Test, firstPort: number, refreshMs: number, wrapA: (p: SharedPort) => SharedPort = p => p, byName?: { host: string, resolve: HostResolver }, relayOpts: Partial<Parameters<typeof startUdpRelay>[0]> = {}) {
  const fw = createFakeRelayFirewall()
  const relay = await startUdpRelay({ key: generateWireGuardKeyPair(), port: 0, listenHost: '127.0.0.1', firewall: fw, sysctls: false, portRange: { first: firstPort, last: firstPort + 999 }, ...relayOpts })
  t.teardown(() => relay.close())
  const nodes = new Map<string, { control: RelayControl, deliver: (m: RelayGrant | RelayRevoke) => void }>()
  const ctl = fakeController(relay, nodes, byName?.host)
  const keys: WireGuardKeyPair[] = [generateWireGuardKeyPair(), generateWireGuardKeyPair()]
  const [ka, kb] = keys as [WireGuardKeyPair, WireGuardKeyPair]
  for (const k of keys) nodes.set(k.publicKey, ctl.controlFor(k.publicKey))
  const pa = await loopbackSharedPort(t)
  const pb = await loopbackSharedPort(t)
  const resolve = byName !== undefined ? { resolve: byName.resolve } : {}
  const a = createUdpRelayClient({ control: nodes.get(ka.publicKey)!.control, sharedPort: wrapA(pa), wgPrivateKey: ka.privateKey, refreshMs, ...resolve })
  const b = createUdpRelayClient({ control: nodes.get(kb.publicKey)!.control, sharedPort: pb, wgPrivateKey: kb.privateKey, refreshMs, ...resolve })
  t.teardown(async () => { await a.close(); await b.close() })
  return { fw, relay, nodes, ctl, ka, kb, pa, a, b }
}

async function until (cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 30_000
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}

t.test('both sides bind through their shared port once one asks; endpoints appear on ack and go on revoke', async t => {
  const { fw, relay, nodes, ctl, ka, kb, pa, a, b } = await twoClients(t, 46000, 200)
  const changes: string[] = []
  a.onChange(p => changes.push(p))

  ctl.setUp(false)
  a.request(kb.publicKey)
  a.request(kb.publicKey)
  t.equal(ctl.sent.length, 0, 'nothing goes out while the controller is away')
  ctl.setUp(true)
  await until(() => a.endpoint(kb.publicKey) !== undefined && b.endpoint(ka.publicKey) !== undefined, 'both endpoints')
  t.equal(ctl.sent.length, 1, 'one request, sent on reconnect')
  const alloc = relay.allocations()[0]!
  const sideOf = (k: string): number => alloc.sides.findIndex(s => s.nodeKey === k)
  t.equal(a.endpoint(kb.publicKey), relay.endpointOf(alloc.sides[sideOf(ka.publicKey)]!.port), 'A\'s endpoint for B is A\'s side of the pair')
  t.same(fw.forward(alloc.sides[sideOf(kb.publicKey)]!.port)?.to, { address: '127.0.0.1', port: pa.wgPort }, 'the relay forwards B\'s packets to A\'s WireGuard port')
  t.ok(changes.includes(kb.publicKey))
  t.equal(a.relayId(kb.publicKey), 'embedded', 'the relay in use is named for status')

  const binds = relay.stats().binds
  await until(() => relay.stats().binds >= binds + 2, 'refreshed binds')

  nodes.get(ka.publicKey)!.deliver({ type: 'relay-revoke', peer: kb.publicKey, allocation: alloc.id, code: 'not_allowed', message: 'policy' })
  t.equal(a.endpoint(kb.publicKey), undefined, 'a revocation drops the endpoint at once')
  nodes.get(kb.publicKey)!.deliver({ type: 'relay-revoke', peer: ka.publicKey, allocation: 'AAAAAAAAAAAAAAAAAAAAAA', code: 'not_allowed', message: 'another allocation' })
  t.ok(b.endpoint(ka.publicKey), 'a revocation of another allocation changes nothing')
})

t.test('a dual-stack relay (listening on ::) acks binds over IPv4: both nodes get their endpoint', async t => {
  const { fw, ka, kb, a, b } = await twoClients(t, 52000, 60_000, undefined, undefined, { listenHost: '::', publicHost: '127.0.0.1', publicHost6: '::1' })
  a.request(kb.publicKey)
  await until(() => a.endpoint(kb.publicKey) !== undefined && b.endpoint(ka.publicKey) !== undefined, 'both endpoints')
  t.match(a.endpoint(kb.publicKey), /^127\.0\.0\.1:52\d{3}$/, 'A\'s endpoint is the relay\'s IPv4 address')
  t.equal(fw.forward(Number(a.endpoint(kb.publicKey)!.split(':')[1]))?.to.address, '127.0.0.1', 'the forward goes to an IPv4 address')
})

t.test('a release tells the controller (on reconnect if it is away); the grant stays until revoked; a request after it asks again', async t => {
  const { relay, nodes, ctl, ka, kb, a, b } = await twoClients(t, 48000, 60_000)
  a.request(kb.publicKey)
  await until(() => a.endpoint(kb.publicKey) !== undefined && b.endpoint(ka.publicKey) !== undefined, 'both endpoints')
  const fromA = (): string[] => ctl.sent.filter(x => x.from === ka.publicKey).map(x => x.msg.type)

  b.release(ka.publicKey)
  t.same(ctl.sent.filter(x => x.from === kb.publicKey), [], 'B never asked: it has nothing to release')
  ctl.setUp(false)
  a.release(kb.publicKey)
  a.release(kb.publicKey)
  t.same(fromA(), ['relay-request'], 'nothing goes out while the controller is away')
  t.ok(a.endpoint(kb.publicKey), 'the endpoint stays until the controller frees the allocation')
  ctl.setUp(true)
  t.same(fromA(), ['relay-request', 'relay-release'], 'the release goes out once, on reconnect')
  ctl.setUp(false)
  ctl.setUp(true)
  t.same(fromA(), ['relay-request', 'relay-release'], 'and not again')

  a.request(kb.publicKey)
  t.same(fromA(), ['relay-request', 'relay-release', 'relay-request'], 'asked for again although the grant is still here: the controller must know A holds it')
  a.release(kb.publicKey)
  const alloc = relay.allocations()[0]!.id
  nodes.get(ka.publicKey)!.deliver({ type: 'relay-revoke', peer: kb.publicKey, allocation: alloc, code: 'released', message: 'neither node holds it' })
  t.equal(a.endpoint(kb.publicKey), undefined, 'the revocation ends it')
  t.same(fromA(), ['relay-request', 'relay-release', 'relay-request', 'relay-release'], 'no request follows a revocation of what we released')
})

t.test('a relay that stops answering binds is no longer used, and is used again once it answers', async t => {
  let deaf = false
  const wrap = (p: SharedPort): SharedPort => ({ ...p, onPacket: (kind, h) => p.onPacket(kind, x => { if (!deaf) h(x) }) })
  const { relay, kb, a } = await twoClients(t, 49000, 300, wrap)
  const changes: string[] = []
  a.onChange(p => changes.push(p))
  a.request(kb.publicKey)
  await until(() => a.endpoint(kb.publicKey) !== undefined, 'A bound')
  const binds = relay.stats().binds
  await until(() => relay.stats().binds >= binds + 3, 'a few refreshes')
  t.ok(a.endpoint(kb.publicKey), 'answered refreshes keep the relay in use')
  const refreshes = relay.stats().binds - binds
  t.ok(refreshes <= 4, `one bind per refresh while acks come (${refreshes})`)

  deaf = true
  const before = changes.length
  const cut = Date.now()
  await until(() => a.endpoint(kb.publicKey) === undefined, 'the endpoint dropped')
  t.ok(Date.now() - cut < 300 + 5000, `dropped ${Date.now() - cut} ms after the acks stopped`)
  t.ok(changes.length > before, 'and the path manager hears of it')
  t.equal(a.relayId(kb.publicKey), undefined)

  deaf = false
  await until(() => a.endpoint(kb.publicKey) !== undefined, 'in use again')
  t.equal(relay.allocations().length, 1, 'the same allocation')
})

t.test('a relay given by name: every address of both families, IPv4 first, in the resolver\'s order', async t => {
  const resolve: HostResolver = async () => ['2001:db8::7', '198.51.100.7', '2001:db8::8', '198.51.100.8', '198.51.100.7']
  t.same(await relayAddresses('relay.example.com', resolve), ['198.51.100.7', '198.51.100.8', '2001:db8::7', '2001:db8::8'])
  t.same(await relayAddresses('2001:db8::9', resolve), ['2001:db8::9'], 'an address is itself')
  await t.rejects(relayAddresses('nowhere.example.com', async () => []), /relay host 'nowhere.example.com' has no IPv4 or IPv6 address/)
})

t.test('a relay name whose first address does not answer: the client binds at the next one', async t => {
  const asked: string[] = []
  // Nothing listens at 127.0.0.9; the relay is on 127.0.0.1 (both loopback).
  const resolve: HostResolver = async host => { asked.push(host); return ['127.0.0.9', '127.0.0.1'] }
  const { relay, ka, kb, a, b } = await twoClients(t, 50000, 300, p => p, { host: 'relay.example.com', resolve })
  a.request(kb.publicKey)
  await until(() => a.endpoint(kb.publicKey) !== undefined && b.endpoint(ka.publicKey) !== undefined, 'both bound at the address that answers')
  t.match(a.endpoint(kb.publicKey), /^127\.0\.0\.1:\d+$/, 'the endpoint is the address that answered')
  t.ok(asked.every(h => h === 'relay.example.com') && asked.length >= 2, 'each client resolved the name the grant gave')
  t.equal(relay.allocations().length, 1)
})

t.test('the fake client records requests and hands out endpoints the test grants', async t => {
  const f = createFakeUdpRelayClient()
  const seen: string[] = []
  f.onChange(p => seen.push(p))
  f.request('k1')
  f.request('k1')
  t.same(f.requested, ['k1'])
  f.grant('k1', '198.51.100.1:40001')
  t.equal(f.endpoint('k1'), '198.51.100.1:40001')
  f.revoke('k1')
  t.equal(f.endpoint('k1'), undefined)
  t.same(seen, ['k1', 'k1'])
})

t.test('a relay endpoint is used only once the peer bound its side too (a peer without UDP never does)', async t => {
  const fw = createFakeRelayFirewall()
  const relay = await startUdpRelay({ key: generateWireGuardKeyPair(), port: 0, listenHost: '127.0.0.1', firewall: fw, sysctls: false, portRange: { first: 47000, last: 47999 } })
  t.teardown(() => relay.close())
  const nodes = new Map<string, { control: RelayControl, deliver: (m: RelayGrant | RelayRevoke) => void }>()
  const ctl = fakeController(relay, nodes)
  const [ka, kb] = [generateWireGuardKeyPair(), generateWireGuardKeyPair()]
  nodes.set(ka.publicKey, ctl.controlFor(ka.publicKey))
  const a = createUdpRelayClient({ control: nodes.get(ka.publicKey)!.control, sharedPort: await loopbackSharedPort(t), wgPrivateKey: ka.privateKey, refreshMs: 60_000 })
  t.teardown(async () => { await a.close() })
  ctl.setUp(true)
  a.request(kb.publicKey)
  await until(() => relay.stats().acks >= 1, 'A\'s bind acked')
  t.equal(a.endpoint(kb.publicKey), undefined, 'acked, but B never bound: no endpoint')
  t.equal(a.relayId(kb.publicKey), undefined)

  // B comes (its grant arrives with its own request); A hears from the relay, not at its next rebind.
  nodes.set(kb.publicKey, ctl.controlFor(kb.publicKey))
  const b = createUdpRelayClient({ control: nodes.get(kb.publicKey)!.control, sharedPort: await loopbackSharedPort(t), wgPrivateKey: kb.privateKey, refreshMs: 60_000 })
  t.teardown(async () => { await b.close() })
  b.request(ka.publicKey)
  await until(() => a.endpoint(kb.publicKey) !== undefined && b.endpoint(ka.publicKey) !== undefined, 'both endpoints once both bound')
  t.equal(relay.allocations().length, 1, 'one allocation for the pair')
})
