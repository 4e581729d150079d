import t from 'tap'
import type { Node, MapDelta, Netmap } from '@warren/protocol'
import { createMeshPolicy, type MeshPolicy } from '../src/map/mesh-policy.js'
import { createMapFanout, type MapFanout, type FanoutSession } from '../src/map/fanout.js'
import { createFakeNodeSource, createFakeMapPolicy, type FakeNodeSource } from '../src/testing.js'
import type { MapPolicy } from '../src/map/types.js'
import { createPolicyEngine, parsePolicy } from '../src/policy/index.js'
import { makeNode } from './map-nodes.js'

/**
 * The map's fan-out core without sockets: node and policy changes go in through the mesh
 * policy (the engine's one writer), and each session's next delta comes out as the text
 * it would be sent.
 */

interface Core {
  source: FakeNodeSource
  mesh: MeshPolicy
  fanout: MapFanout
  /** add puts an active node into the source (as a registration would) */
  add: (change?: Partial<Node>) => Node
  /** open starts a session and returns its full map */
  open: (n: Node) => { session: FanoutSession, map: { seq: number, netmap: Netmap } }
  /** take sends every dirty session its delta, by node name */
  take: () => Record<string, MapDelta>
}

function startCore (engine: MapPolicy = createFakeMapPolicy()): Core {
  const source = createFakeNodeSource()
  const mesh = createMeshPolicy({
    source,
    engine,
    listener: {
      nodeChanged: r => { fanout.nodeChanged(r.node, r) },
      nodeRemoved: r => { fanout.nodeRemoved(r.node, r.policy) },
      policyChanged: ids => { fanout.policyChanged(ids) }
    }
  })
  const fanout = createMapFanout({ peers: mesh, domain: 'warren.internal' })
  const text = (pieces: string[]): any => JSON.parse(pieces.join(''))
  return {
    source,
    mesh,
    fanout,
    add: change => source.put(makeNode(change).node),
    open (n) {
      const { session } = fanout.openSession(n.id)
      const map = text(fanout.fullMap(session))
      fanout.setConnected(session, true)
      return { session, map }
    },
    take () {
      const out: Record<string, MapDelta> = {}
      for (const s of fanout.dirty()) {
        const delta = fanout.delta(s)
        if (delta !== undefined) out[fanout.node(s.nodeId)!.name] = text(delta)
        fanout.settle(s)
      }
      return out
    }
  }
}

const names = (d: MapDelta | undefined): string[] => (d?.peersChanged ?? []).map(p => p.name).sort()

t.test('a change queues one delta for each session it affects, and none for others', async t => {
  const core = startCore(createFakeMapPolicy())
  const [r1, r2, b1] = [core.add({ name: 'red1', tags: ['tag:red'] }), core.add({ name: 'red2', tags: ['tag:red'] }), core.add({ name: 'blue1', tags: ['tag:blue'] })]
  for (const n of [r1, r2, b1]) core.open(n)
  t.same(core.take(), {}, 'nothing is queued after the full maps')

  core.add({ name: 'red3', tags: ['tag:red'] })
  const got = core.take()
  t.same(Object.keys(got).sort(), ['red1', 'red2'], 'only the red sessions')
  t.same(names(got.red1), ['red3'])
  t.equal(got.red1!.seq, 2, 'numbered after the full map (seq 1)')
  t.equal(got.red1!.filter?.[0]?.srcs.length, 4, 'with the filter that now admits red3')
})

t.test('changes before the next delta merge into it', async t => {
  const core = startCore()
  const a = core.add({ name: 'alpha' })
  core.open(a)
  const b = core.add({ name: 'beta' })
  core.source.patch(b.id, { endpoints: ['192.0.2.1:41641'] })
  core.source.patch(b.id, { endpoints: ['192.0.2.2:41641'] })
  let got = core.take()
  t.same(names(got.alpha), ['beta'], 'a join and two changes are one peer entry')
  t.same(got.alpha!.peersChanged![0]!.endpoints, ['192.0.2.2:41641'], 'carrying the latest view')

  const c = core.add({ name: 'gamma' })
  core.source.remove(c.id)
  got = core.take()
  t.equal(got.alpha!.peersChanged, undefined, 'a peer that came and went is not sent as changed')
  t.same(got.alpha!.peersRemoved, [c.id], 'only as removed')
  t.equal(got.alpha!.seq, 3)
})

t.test('a session that is away keeps its changes for the resume', async t => {
  const core = startCore()
  const a = core.add({ name: 'alpha' })
  const { session } = core.open(a)
  core.fanout.setConnected(session, false)
  core.add({ name: 'beta' })
  core.add({ name: 'gamma' })
  t.same(core.take(), {}, 'nothing is sent while away')
  const { session: again, resumed } = core.fanout.openSession(a.id, { session: session.id, seq: 1 })
  t.ok(resumed, 'the same session resumes at its seq')
  const delta = JSON.parse(core.fanout.resumeDelta(again).join('')) as MapDelta
  t.equal(delta.seq, 2)
  t.same(names(delta), ['beta', 'gamma'], 'both joins in the one catch-up delta')
  t.notOk(core.fanout.openSession(a.id, { session: session.id, seq: 1 }).resumed, 'a stale seq starts over')
})

t.test('pending and expired nodes are nobody\'s peer', async t => {
  const core = startCore()
  const a = core.add({ name: 'alpha' })
  core.open(a)
  const p = core.add({ name: 'newbie', status: 'pending' })
  t.same(core.open(p).map.netmap.peers, [], 'a pending node sees nobody')
  t.same(core.take(), {}, 'and nobody hears of it')
  core.source.patch(p.id, { status: 'active' })
  const got = core.take()
  t.same(names(got.alpha), ['newbie'], 'approval brings it to its peers')
  t.same(names(got.newbie), ['alpha'], 'and its peers to it')
  core.source.patch(p.id, { status: 'expired' })
  t.same(core.take().alpha?.peersRemoved, [p.id], 'expiry takes it away again')
})

t.test('the mesh policy is the engine\'s one writer; a policy change reaches only the sessions it changes', async t => {
  const users = [{ name: 'alice' }]
  const policyText = (blueReachesRed: boolean): string => `{
    "tagOwners": { "tag:red": ["alice@"], "tag:blue": ["alice@"], "tag:green": ["alice@"] },
    "acls": [
      { "action": "accept", "src": ["tag:red"], "dst": ["tag:red:*"] },
      { "action": "accept", "src": ["tag:green"], "dst": ["tag:green:*"] },
      ${blueReachesRed ? '{ "action": "accept", "src": ["tag:blue"], "dst": ["tag:red:22"] },' : ''}
    ],
  }`
  const parse = (text: string): NonNullable<ReturnType<typeof parsePolicy>['policy']> => parsePolicy(text, { users }).policy!
  const engine = createPolicyEngine(parse(policyText(false)), users)
  const writes: string[] = []
  const spy: MapPolicy = {
    setNodes: nodes => { writes.push('setNodes'); engine.setNodes(nodes) },
    upsertNode: n => { writes.push(`upsert ${n.name}`); return engine.upsertNode(n) },
    removeNode: id => { writes.push('remove'); return engine.removeNode(id) },
    peersOf: id => engine.peersOf(id),
    filterFor: id => engine.filterFor(id),
    setPolicy: (policy, u) => { writes.push('setPolicy'); return engine.setPolicy(policy, u) }
  }
  const core = startCore(spy)
  const red = core.add({ name: 'red1', tags: ['tag:red'] })
  const blue = core.add({ name: 'blue1', tags: ['tag:blue'] })
  const green = core.add({ name: 'green1', tags: ['tag:green'] })
  for (const n of [red, blue, green]) core.open(n)
  t.same(writes, ['setNodes', 'upsert red1', 'upsert blue1', 'upsert green1'], 'node changes reach the engine through the mesh')

  core.mesh.setPolicy(parse(policyText(true)), users)
  const got = core.take()
  t.same(Object.keys(got).sort(), ['blue1', 'red1'], 'green is not touched')
  t.same(names(got.blue1), ['red1'])
  t.same(names(got.red1), ['blue1'])
  const fromBlue = got.red1!.filter!.filter(f => f.srcs.includes(`${blue.ipv4}/32`) && f.protos.includes(6))
  t.same(fromBlue.map(f => f.ports), [[{ first: 22, last: 22 }]], 'red admits blue on TCP port 22 only')
  t.equal(writes.at(-1), 'setPolicy')
})

t.test('a node sees its own nodeAttrs in its self, never another node\'s; a policy change sends the new ones', async t => {
  const users = [{ name: 'alice' }]
  const policyText = (target: string): string => `{
    "tagOwners": { "tag:red": ["alice@"], "tag:blue": ["alice@"] },
    "acls": [{ "action": "accept", "src": ["*"], "dst": ["*:*"] }],
    "nodeAttrs": [{ "target": ["${target}"], "attr": ["randomize-client-port"], "app": { "example.com/cap/x": [{ "secret": "${target}" }] } }],
  }`
  const parse = (text: string): NonNullable<ReturnType<typeof parsePolicy>['policy']> => parsePolicy(text, { users }).policy!
  const core = startCore(createPolicyEngine(parse(policyText('tag:red')), users))
  const red = core.add({ name: 'red1', tags: ['tag:red'] })
  const blue = core.add({ name: 'blue1', tags: ['tag:blue'] })
  const redMap = core.open(red).map
  const blueMap = core.open(blue).map
  const want = { 'example.com/cap/x': [{ secret: 'tag:red' }], 'randomize-client-port': [] }
  t.same(redMap.netmap.self.attrs, want, 'red gets its attributes')
  t.equal(blueMap.netmap.self.attrs, undefined, 'blue has none')
  t.notMatch(JSON.stringify(blueMap.netmap), /randomize-client-port|secret/, 'nothing of red\'s attributes reaches blue, not even in its peer entry')
  t.same(blueMap.netmap.peers.map(p => p.name), ['red1'])

  core.mesh.setPolicy(parse(policyText('tag:blue')), users)
  const got = core.take()
  t.equal(got.red1?.self?.attrs, undefined, 'red is told it has no attributes now')
  t.same(got.blue1?.self?.attrs, { 'example.com/cap/x': [{ secret: 'tag:blue' }], 'randomize-client-port': [] }, 'blue is told its new ones')
  t.equal(got.blue1?.peersChanged, undefined, 'no peer is resent for it')

  core.source.put({ ...red, tags: ['tag:blue'] })
  const retagged = core.take()
  t.same(Object.keys(retagged.red1?.self?.attrs ?? {}), ['example.com/cap/x', 'randomize-client-port'], 'a retagged node gets the attributes of its new tag')
  t.notMatch(JSON.stringify(retagged.blue1 ?? {}), /secret/, 'its peers do not')
})
