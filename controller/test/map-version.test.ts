import t, { type Test } from 'tap'
import { Type, type TSchema } from '@sinclair/typebox'
import {
  Obj, Node, Peer, FilterRule, RelayInfo, Netmap, MapFull, MapDelta, MapChallenge, MapError, RelayGrant, RelayRevoke, PROTOCOL_VERSION,
  generateWireGuardKeyPair, validate, nodeForVersion, serverMessageForVersion, type FilterRule as Rule, type NatConfig
} from '@warren/protocol'
import { createFakeMapPolicy } from '../src/testing.js'
import type { MapPolicy } from '../src/map/types.js'
import { startWith, connectReady, waitUntil, makeNode, type MapTestClient } from './map-harness.js'
import { testController, call } from './helpers.js'

/**
 * A node of protocol version 1 (before subnet routes, TLS relay pins and call-me-maybe)
 * on a current controller: every message it is sent passes its closed version-1 schemas,
 * while a current node on the same controller gets everything.
 */

/** omit is a closed object schema without some of a schema's fields, as an older build declared it. */
const omit = (schema: TSchema & { properties: Record<string, TSchema> }, fields: string[]) =>
  Obj(Object.fromEntries(Object.entries(schema.properties).filter(([k]) => !fields.includes(k))))

/** V1 are the schemas of a version-1 node, which refuse any field they do not know. */
const V1 = (() => {
  // version 1's tags were lowercase only
  const tags = Type.Array(Type.String({ pattern: '^tag:[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$' }))
  const node = Obj({ ...omit(Node, ['advertisedRoutes', 'approvedRoutes', 'attrs', 'primaryRoutes', 'postureAttrs']).properties, tags })
  const peer = Obj({ ...omit(Peer, ['routes', 'primaryRoutes']).properties, tags })
  const rule = omit(FilterRule, ['dsts', 'caps'])
  const nat = Obj({ stun: Type.Array(Type.String()), relays: Type.Array(omit(RelayInfo, ['tlsFingerprint', 'udp6'])) })
  // The same messages with the older parts in their places.
  const netmap = Obj({ ...Netmap.properties, self: node, peers: Type.Array(peer), filter: Type.Array(rule), nat: Type.Optional(nat) })
  const full = Obj({ ...MapFull.properties, netmap })
  const delta = Obj({
    ...MapDelta.properties,
    self: Type.Optional(node),
    peersChanged: Type.Optional(Type.Array(peer)),
    filter: Type.Optional(Type.Array(rule)),
    nat: Type.Optional(nat)
  })
  return { node, message: Type.Union([MapChallenge, full, delta, MapError, RelayGrant, RelayRevoke]) }
})()

/** checkOld validates every message an old node got against its version-1 schemas. */
function checkOld (t: Test, c: MapTestClient, what: string): void {
  const bad = c.messages.flatMap(m => { try { validate(V1.message, m, 'old node message'); return [] } catch (e) { return [`${m.type}: ${(e as Error).message}`] } })
  t.same(bad, [], `${what}: every message passes a version-1 node's schemas`)
}

const LAN = '192.168.7.0/24'
const forward: Rule = { srcs: ['100.64.0.0/10'], protos: [6], ports: [{ first: 22, last: 22 }], dsts: [LAN] }
const ATTRS = { 'custom:x': [] }
const capRule: Rule = { srcs: ['100.64.0.0/10'], protos: [], ports: [], caps: { 'example.com/cap/web': [{ role: 'admin' }] } }
const key = generateWireGuardKeyPair().publicKey
const nat: NatConfig = {
  stun: ['198.51.100.1:3478'],
  relays: [
    { id: 'controller', udp: '198.51.100.1:3480', key, tls: 'https://198.51.100.1:8443' },
    { id: 'edge-1', udp: '198.51.100.7:3480', key, tls: 'https://198.51.100.7:443', tlsFingerprint: 'b'.repeat(64) },
    { id: 'edge-2', key, tls: 'https://198.51.100.8:443', tlsFingerprint: 'c'.repeat(64) },
    { id: 'dual', udp: '198.51.100.9:3480', udp6: '[2001:db8::9]:3480', key },
    { id: 'v6-only', udp6: '[2001:db8::6]:3480', key }
  ]
}

/** withForward is the fake policy plus one subnet router forward rule and one capability rule in every node's filter, and one attribute for every node. */
function withForward (): MapPolicy {
  const base = createFakeMapPolicy()
  const cache = new Map<Rule[], Rule[]>()
  return {
    ...base,
    attrsFor: () => ATTRS,
    filterFor: id => {
      const rules = base.filterFor(id)
      let out = cache.get(rules)
      if (out === undefined) cache.set(rules, out = [...rules, forward, capRule])
      return out
    }
  }
}

t.test('a version-1 node gets maps, deltas and relay messages it can parse; a current node gets all', async t => {
  const { srv, nodes: [old, cur] } = await startWith(t, ['old', 'cur'], { policy: withForward(), nat })
  srv.source.patch(old!.node.id, { advertisedRoutes: [LAN], approvedRoutes: [LAN] })
  const router = srv.add({ name: 'router', advertisedRoutes: [LAN], approvedRoutes: [LAN] })
  const co = await connectReady(srv.url, old!, { version: 1 })
  const cc = await connectReady(srv.url, cur!)
  const cr = await connectReady(srv.url, router)
  t.teardown(async () => { await co.close(); await cc.close(); await cr.close() })
  await waitUntil(() => co.netmap!.peers.some(p => p.name === 'router' && p.online), 'the router online at the old node')

  const oldMap = co.netmap!
  t.same(oldMap.filter.filter(r => r.dsts !== undefined), [], 'no forward rule: a version-1 node would read it as traffic to itself')
  t.same(oldMap.filter.filter(r => r.caps !== undefined), [], 'no capability rule, which it cannot read')
  t.ok(oldMap.filter.length > 0, 'the node\'s own rules are there')
  t.equal(oldMap.peers.find(p => p.name === 'router')?.routes, undefined, 'no routes on peers')
  t.equal(oldMap.self.advertisedRoutes, undefined, 'nor on itself')
  t.equal(oldMap.self.attrs, undefined, 'no node attributes')
  t.same(oldMap.nat?.relays, [
    nat.relays[0],
    { id: 'edge-1', udp: '198.51.100.7:3480', key },
    { id: 'dual', udp: '198.51.100.9:3480', key },
    { id: 'v6-only', udp: '[2001:db8::6]:3480', key }
  ], 'standalone TLS relays (which need a pin) are left out; a dual-stack relay keeps its IPv4 endpoint, an IPv6-only one moves to the field it knows')

  const curMap = cc.netmap!
  t.same(curMap.filter.filter(r => r.dsts !== undefined), [forward], 'a current node gets the forward rule')
  t.same(curMap.filter.filter(r => r.caps !== undefined), [capRule], 'and the capability rule')
  t.same(curMap.self.attrs, ATTRS, 'and its attributes')
  t.same(curMap.peers.find(p => p.name === 'router')?.routes, [LAN])
  t.same(curMap.nat, nat, 'and every relay with its pin')

  // call-me-maybe is new in version 2: the old node is not sent it, the current one is.
  co.send(JSON.stringify({ type: 'call-me-maybe', peer: cur!.node.id }))
  await waitUntil(() => cc.messages.some(m => m.type === 'call-me-maybe'), 'the old node\'s call at the current node')
  // Each socket's messages are handled in order, and each answer queued after what came before.
  cc.send(JSON.stringify({ type: 'call-me-maybe', peer: old!.node.id }))
  cc.send(JSON.stringify({ type: 'relay-request', peer: old!.node.id }))
  await waitUntil(() => cc.messages.some(m => m.type === 'relay-revoke'), 'the current node\'s relay answer, after its call was handled')
  co.send(JSON.stringify({ type: 'relay-request', peer: cur!.node.id }))
  await waitUntil(() => co.messages.some(m => m.type === 'relay-revoke'), 'the old node\'s relay answer, queued after the call would be')
  t.same(co.messages.filter(m => m.type === 'call-me-maybe'), [], 'the old node got no call-me-maybe')

  // A delta that changes routes and NAT.
  srv.source.patch(router.node.id, { advertisedRoutes: [LAN, '10.9.0.0/16'], approvedRoutes: [LAN, '10.9.0.0/16'] })
  await waitUntil(() => cc.netmap!.peers.find(p => p.name === 'router')?.routes?.length === 2, 'the new route at the current node')
  const seq = co.seq
  srv.source.patch(router.node.id, { tags: ['tag:x'] })
  await waitUntil(() => co.seq > seq, 'a delta at the old node')
  checkOld(t, co, 'the old node')
  t.same(co.problems, [], 'and the current schemas, with no seq gap')
  t.equal(co.netmap!.peers.find(p => p.name === 'router')?.routes, undefined)
})

t.test('GET /v1/machine/key answers the version both speak; registration answers an old node in its own schema', async t => {
  const tc = await testController(t)
  const info = async (q: string) => (await call(tc.app, 'GET', `/v1/machine/key${q}`)).body.version
  t.equal(await info(''), 1, 'a node that names no version is from before negotiation: version 1')
  t.equal(await info(`?version=${PROTOCOL_VERSION}`), PROTOCOL_VERSION)
  t.equal(await info(`?version=${PROTOCOL_VERSION + 5}`), PROTOCOL_VERSION, 'a newer node gets this controller\'s version')
  const bad = await call(tc.app, 'GET', '/v1/machine/key?version=zero')
  t.equal(bad.status, 400, 'a version that is no number is refused')
  t.match(JSON.stringify(bad.body), /version/, 'naming the field')
})

t.test('a version-2 node gets a dual-stack relay\'s IPv4 endpoint and keeps its pins', async t => {
  const msg = serverMessageForVersion({ type: 'delta', seq: 1, nat }, 2)
  t.same(msg?.type === 'delta' ? msg.nat?.relays : undefined, [
    nat.relays[0], nat.relays[1], nat.relays[2],
    { id: 'dual', udp: '198.51.100.9:3480', key },
    { id: 'v6-only', udp: '[2001:db8::6]:3480', key }
  ])
  t.same(serverMessageForVersion({ type: 'delta', seq: 1, nat }, PROTOCOL_VERSION), { type: 'delta', seq: 1, nat }, 'a current node gets udp6')
})

t.test('a version-1 node\'s own record leaves out its routes', async t => {
  const { node } = makeNode({ advertisedRoutes: [LAN], approvedRoutes: [LAN] })
  t.doesNotThrow(() => validate(V1.node, nodeForVersion(node, 1), 'old node'), 'passes a version-1 node\'s schema')
  t.throws(() => validate(V1.node, node, 'old node'), 'which the record with routes does not')
  t.same(nodeForVersion(node, PROTOCOL_VERSION), node, 'a current node gets it whole')
})

t.test('a version-1 node reads tags with capitals in lowercase; a current node as written', async t => {
  const { node } = makeNode({ tags: ['tag:Server', 'tag:db'] })
  t.throws(() => validate(V1.node, node, 'old node'), 'version 1 knew no capitals in tags')
  const old = nodeForVersion(node, 1)
  t.doesNotThrow(() => validate(V1.node, old, 'old node'))
  t.same(old.tags, ['tag:server', 'tag:db'])
  t.same(nodeForVersion(node, PROTOCOL_VERSION).tags, ['tag:Server', 'tag:db'])
  const delta = serverMessageForVersion({ type: 'delta', seq: 1, self: node }, 1)
  t.same(delta?.type === 'delta' ? delta.self?.tags : undefined, ['tag:server', 'tag:db'], 'in a delta too')
})
