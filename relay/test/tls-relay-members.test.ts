import t from 'tap'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { generateMachineKeyPair, generateWireGuardKeyPair, type MachineKeyPair, type RelayMember } from '@warren/protocol'
import { createTlsRelay, createRelayMembers, type TlsRelay, type MirroredMembers } from '../src/index.js'
import { connectRelayTestClient } from '../src/testing.js'

/**
 * A standalone TLS relay has no registry: it lets in and relays only what the controller
 * last listed over the relay link. The mirror of that list, and the relay judging nodes
 * and pairs by it, in-process over plain HTTP on loopback.
 */

interface TestNode { member: RelayMember, machine: MachineKeyPair }

function node (id: string, peers: string[]): TestNode {
  const machine = generateMachineKeyPair()
  return { machine, member: { id, name: id, machineKey: machine.publicKey, wgKey: generateWireGuardKeyPair().publicKey, peers } }
}

/** full is the whole list in one message. */
const full = (...nodes: TestNode[]) => ({ type: 'relay-members' as const, reset: true, done: true, members: nodes.map(n => n.member), removed: [] })
const change = (nodes: TestNode[], removed: string[] = []) => ({ type: 'relay-members' as const, members: nodes.map(n => n.member), removed })

async function waitUntil (cond: () => boolean, what: string): Promise<void> {
  const until = Date.now() + 30_000
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 5))
  }
}

async function startRelay (t: { teardown: (fn: () => Promise<void>) => void }): Promise<{ relay: TlsRelay, members: MirroredMembers, port: number }> {
  const members = createRelayMembers()
  const relay = createTlsRelay({ members })
  const server = createServer()
  relay.attach(server)
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    await relay.close()
    await new Promise<void>(resolve => server.close(() => resolve()))
  })
  return { relay, members, port: (server.address() as AddressInfo).port }
}

t.test('the mirror holds what the controller listed: members, their keys and peers', async t => {
  const m = createRelayMembers()
  const [a, b, c] = [node('a', ['b']), node('b', ['a']), node('c', [])]
  t.equal(m.byMachineKey(a.member.machineKey), undefined, 'empty until the controller speaks: nobody gets in')
  t.equal(m.apply(full(a, b, c)), undefined, 'a full list changes everyone')
  t.same(m.byMachineKey(a.member.machineKey), { id: 'a', name: 'a', wgKey: a.member.wgKey })
  t.ok(m.isMember('c'))
  t.same([...m.peersOf('a')], ['b'])
  t.same([...m.peersOf('c')], [])
  t.same([...m.apply(change([{ ...a, member: { ...a.member, peers: [] } }], ['c'])) ?? []].sort(), ['a', 'c'], 'a change names the ids it touched')
  t.same([...m.peersOf('a')], [], 'a no longer may talk to b')
  t.notOk(m.isMember('c'), 'c is gone')
  t.equal(m.byMachineKey(c.member.machineKey), undefined)
  t.same([...m.peersOf('c')], [], 'a removed node has no peers')
  const rekeyed = generateMachineKeyPair()
  m.apply(change([{ ...b, member: { ...b.member, machineKey: rekeyed.publicKey } }]))
  t.equal(m.byMachineKey(b.member.machineKey), undefined, 'the old machine key no longer finds the node')
  t.equal(m.byMachineKey(rekeyed.publicKey)?.id, 'b')
  m.clear()
  t.equal(m.size(), 0, 'clear forgets everyone')
})

t.test('a full list in several messages drops the unlisted only when it is done', async t => {
  const m = createRelayMembers()
  const [a, b, c] = [node('a', ['b']), node('b', ['a']), node('c', [])]
  m.apply(full(a, b, c))
  t.same(m.apply({ type: 'relay-members', reset: true, members: [a.member], removed: [] }), ['a'])
  t.ok(m.isMember('b'), 'b is still a member while the list is in progress')
  t.ok(m.isMember('c'))
  t.equal(m.apply({ type: 'relay-members', done: true, members: [b.member], removed: [] }), undefined)
  t.same(['a', 'b', 'c'].filter(id => m.isMember(id)), ['a', 'b'], 'c, which the new list left out, is dropped at its end')
})

t.test('the relay lets in only listed nodes, relays only listed pairs, and cuts at once', async t => {
  const { relay, members, port } = await startRelay(t)
  const [a, b, c] = [node('a', ['b']), node('b', ['a']), node('c', [])]
  const early = await connectRelayTestClient(port, a.machine)
  await early.closed
  t.match(early.errors, [{ code: 'unknown_node' }], 'before the controller listed anyone, nobody gets in')

  members.apply(full(a, b, c))
  relay.meshChanged()
  const [ca, cb, cc] = [await connectRelayTestClient(port, a.machine), await connectRelayTestClient(port, b.machine), await connectRelayTestClient(port, c.machine)]
  await Promise.all([ca.welcomed, cb.welcomed, cc.welcomed])
  ca.send(1, b.member.wgKey, new Uint8Array(100).fill(1))
  ca.send(2, c.member.wgKey, new Uint8Array(100).fill(2))
  cc.send(1, a.member.wgKey, new Uint8Array(100).fill(3))
  await waitUntil(() => cb.got.length === 1 && relay.stats().dropped.denied === 2, 'a to b relayed, a to c and c to a denied')
  t.same(cb.got.map(g => [g.from, g.packet[0]]), [[a.member.wgKey, 1]], 'b got a\'s packet, from a\'s key')
  t.equal(cc.got.length + ca.got.length, 0, 'no packet crossed between a and c, which the list does not pair')

  // The policy stops letting a and b talk: the next frame is dropped.
  relay.meshChanged(members.apply(change([{ ...a, member: { ...a.member, peers: [] } }, { ...b, member: { ...b.member, peers: [] } }])))
  ca.send(1, b.member.wgKey, new Uint8Array(100).fill(4))
  await waitUntil(() => relay.stats().dropped.denied === 3, 'the next packet denied')
  t.equal(cb.got.length, 1, 'nothing more reached b')

  // A node the controller removes is cut at once.
  relay.meshChanged(members.apply(change([], ['c'])))
  await cc.closed
  t.match(cc.errors, [{ code: 'node_deleted' }])

  // A lost link to the controller forgets every member: everyone is cut.
  members.clear()
  relay.meshChanged()
  await Promise.all([ca.closed, cb.closed])
  t.equal(relay.stats().links, 0)
})
