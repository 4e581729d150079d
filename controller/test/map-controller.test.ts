import t from 'tap'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { request } from 'node:https'
import type { Node } from '@warren/protocol'
import { startController, CERT_FILE, type RunningController } from '../src/index.js'
import { mapServerHook, type MapService } from '../src/map/index.js'
import { createPolicyEngine, parsePolicy } from '../src/policy/index.js'
import { tempDir, registration, newMachine } from './helpers.js'
import { connectReady, waitUntil, type TestNode, type MapTestClient } from './map-harness.js'

/** The map service on the real controller: HTTPS registration with signatures, then wss map sessions. */

interface Running { c: RunningController, ca: string, service: MapService, key: (opts?: Record<string, unknown>) => Promise<string> }

/** start runs a controller with a map service of its own (hook), or with the one it builds in (builtIn). */
async function start (t: { teardown: (fn: () => unknown) => void }, hook: Parameters<typeof mapServerHook>[0] = {}, builtIn = false, extra: { stunPort?: number } = {}): Promise<Running> {
  const dir = await tempDir(t, 'warren-map-')
  let service: MapService | undefined
  const c = await startController({
    stateDir: dir,
    listen: '127.0.0.1:0',
    logger: false,
    rateLimit: false,
    ...extra,
    ...(builtIn
      ? { map: { coalesceMs: 20, ...hook } }
      : { map: false, onServer: mapServerHook({ coalesceMs: 20, ...hook, onStart: s => { service = s } }) })
  })
  t.teardown(c.close)
  await c.state.createUser({ name: 'alice' }, 'test')
  const ca = await readFile(join(dir, CERT_FILE), 'utf8')
  return {
    c,
    ca,
    service: service ?? c.map!,
    key: async (opts = {}) => (await c.state.createAuthKey({ user: 'alice', reusable: true, preapproved: true, ...opts }, 'test')).key
  }
}

async function register (r: Running, hostname: string, authKey: string, requestTags?: string[]): Promise<TestNode> {
  const m = newMachine()
  const body = JSON.stringify(registration(r.c.state.controllerKey.publicKey, { authKey, hostname, m, ...(requestTags !== undefined ? { requestTags } : {}) }))
  const url = new URL('/v1/machine/register', r.c.url)
  const res = await new Promise<{ status: number, text: string }>((resolve, reject) => {
    const req = request(url, { method: 'POST', ca: r.ca, headers: { 'content-type': 'application/json' } }, res => {
      let text = ''
      res.on('data', (b: Buffer) => { text += b.toString() })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }))
    })
    req.on('error', reject)
    req.end(body)
  })
  if (res.status !== 200) throw new Error(`registration of ${hostname} failed: ${res.status} ${res.text}`)
  return { node: (JSON.parse(res.text) as { node: Node }).node, machine: m.machine }
}

async function connect (r: Running, n: TestNode, attrs?: Record<string, string>): Promise<MapTestClient> {
  return await connectReady(`${r.c.url.replace('https:', 'wss:')}/v1/machine/map`, n, { ws: { ca: r.ca }, ...(attrs !== undefined ? { attrs } : {}) })
}

t.test('registered nodes get their map over TLS; joins, approval and deletion reach peers', async t => {
  const r = await start(t)
  const key = await r.key()
  const a = await register(r, 'alpha', key)
  const b = await register(r, 'beta', key)
  const ca = await connect(r, a)
  const cb = await connect(r, b)
  t.teardown(async () => { await ca.close(); await cb.close() })
  t.same(ca.peerNames(), ['beta'])
  t.equal(ca.netmap!.filter.length > 0, true, 'allow-all gives a filter')
  await waitUntil(() => [ca, cb].every(c => c.netmap!.self.online && c.netmap!.peers[0]!.online), 'both online')
  await waitUntil(() => r.c.state.getNode(a.node.id)!.online, 'online in the controller state')
  const before = [ca.deltas.length, cb.deltas.length]

  const g = await register(r, 'gamma', key)
  await waitUntil(() => ca.peerNames().includes('gamma') && cb.peerNames().includes('gamma'), 'gamma joins')
  await new Promise(resolve => setTimeout(resolve, 80))
  t.equal(ca.deltas.length - before[0]!, 1, 'alpha got one delta for the join')
  t.equal(cb.deltas.length - before[1]!, 1, 'beta too')

  const pendingKey = await r.key({ preapproved: false })
  const p = await register(r, 'newbie', pendingKey)
  t.equal(p.node.status, 'pending')
  const cp = await connect(r, p)
  t.teardown(cp.close)
  t.same(cp.netmap!.peers, [], 'a pending node sees nobody')
  t.notOk(ca.peerNames().includes('newbie'), 'and nobody sees it')
  await r.c.state.approveNode(p.node.id, 'test')
  await waitUntil(() => cp.peerNames().length === 3 && ca.peerNames().includes('newbie'), 'peers after approval')

  const started = Date.now()
  await r.c.state.deleteNode(g.node.id, 'test')
  await waitUntil(() => !ca.peerNames().includes('gamma') && !cb.peerNames().includes('gamma'), 'gamma removed')
  t.comment(`deletion reached peers in ${Date.now() - started} ms`)
  t.same([...ca.problems, ...cb.problems, ...cp.problems], [])

  const text = await r.c.metrics.registry.metrics()
  t.match(text, /warren_map_connected_nodes 3/, 'metrics on the controller\'s /metrics registry')
})

t.test('the policy engine decides who sees whom', async t => {
  const { policy, errors } = parsePolicy(`{
    "tagOwners": { "tag:red": ["alice@"], "tag:blue": ["alice@"], "tag:server": ["alice@"] },
    "acls": [
      { "action": "accept", "src": ["tag:red"], "dst": ["tag:red:*", "tag:server:443"] },
      { "action": "accept", "src": ["tag:blue"], "dst": ["tag:blue:*", "tag:server:443"] },
    ],
  }`)
  t.same(errors, [])
  const r = await start(t, { policy: createPolicyEngine(policy!, [{ name: 'alice' }]) })
  const red = await r.key({ tags: ['tag:red'] })
  const blue = await r.key({ tags: ['tag:blue'] })
  const srv = await r.key({ tags: ['tag:server'] })
  const nodes = [await register(r, 'red1', red), await register(r, 'red2', red), await register(r, 'blue1', blue), await register(r, 'db', srv)]
  const clients = await Promise.all(nodes.map(async n => await connect(r, n)))
  t.teardown(async () => { for (const c of clients) await c.close() })
  const [r1, , b1, db] = clients
  t.same(r1!.peerNames(), ['db', 'red2'])
  t.same(b1!.peerNames(), ['db'])
  t.same(db!.peerNames(), ['blue1', 'red1', 'red2'])
  const tcpPorts = db!.netmap!.filter.filter(f => f.protos.includes(6)).flatMap(f => f.ports)
  t.same(tcpPorts, [{ first: 443, last: 443 }], 'the server admits TCP port 443 only')

  await register(r, 'red3', red)
  await waitUntil(() => r1!.peerNames().includes('red3') && db!.peerNames().includes('red3'), 'red3 at red1 and db')
  await waitUntil(() => db!.netmap!.filter[0]!.srcs.length === 8, 'db filter admits red3')
  await new Promise(resolve => setTimeout(resolve, 80))
  t.notOk(b1!.messages.some(m => JSON.stringify(m).includes('red3')), 'blue never hears of red3')
})

t.test('the controller\'s policy reaches map sessions, and presence is recorded without node events', async t => {
  const r = await start(t, {}, true)
  const tagOwners = '"tagOwners": { "tag:red": ["alice@"], "tag:blue": ["alice@"] }'
  await r.c.policy.set(`{ ${tagOwners}, "acls": [
    { "action": "accept", "src": ["tag:red"], "dst": ["tag:red:*"] },
    { "action": "accept", "src": ["tag:blue"], "dst": ["tag:blue:*"] } ] }`, 'test')
  const red = await r.key({ tags: ['tag:red'] })
  const blue = await r.key({ tags: ['tag:blue'] })
  const nodes = [await register(r, 'red1', red), await register(r, 'red2', red), await register(r, 'blue1', blue)]
  const announced: string[] = []
  r.c.state.events.on('node-upserted', n => announced.push(n.name))
  const clients = await Promise.all(nodes.map(async n => await connect(r, n)))
  t.teardown(async () => { for (const c of clients) await c.close() })
  const [r1, , b1] = clients
  t.same(r1!.peerNames(), ['red2'])
  t.same(b1!.peerNames(), [], 'blue reaches nobody yet')
  await waitUntil(() => r1!.netmap!.peers[0]!.online, 'red2 online at red1')
  t.ok(r.c.state.getNode(nodes[1]!.node.id)!.online, 'the state knows red2 is online')

  await r.c.policy.set(`{ ${tagOwners}, "acls": [ { "action": "accept", "src": ["*"], "dst": ["*:*"] } ] }`, 'test')
  await waitUntil(() => b1!.peerNames().join() === 'red1,red2' && r1!.peerNames().join() === 'blue1,red2', 'everyone after the new policy')
  t.same(announced, [], 'connecting announced no node change: the map service recorded it and told the peers itself')
  t.same(clients.flatMap(c => c.problems), [])
})

t.test('with STUN on, every map lists the controller\'s two STUN ports, host-less (the controller URL\'s host)', async t => {
  const r = await start(t, {}, true, { stunPort: 0 })
  const ports = r.c.stun!.ports
  t.not(ports[0], ports[1])
  const n = await register(r, 'red1', await r.key())
  const c = await connect(r, n)
  t.teardown(async () => { await c.close() })
  t.same(c.netmap!.nat, { stun: ports.map(p => `:${p}`), relays: [] })
  r.service.setNat({ stun: [':1', ':2'], relays: [] })
  await waitUntil(() => c.netmap!.nat?.stun[0] === ':1', 'the new NAT config as a delta')
  t.same(c.problems, [])
})

t.test('without STUN the map carries no NAT config', async t => {
  const r = await start(t, {}, true)
  t.equal(r.c.stun, undefined)
  const c = await connect(r, await register(r, 'red1', await r.key()))
  t.teardown(async () => { await c.close() })
  t.equal(c.netmap!.nat, undefined)
})

t.test('a source that stops meeting a posture loses access at once; one that starts meeting it gains it', async t => {
  const r = await start(t, {}, true)
  await r.c.policy.set(`{ "tagOwners": { "tag:db": ["alice@"] },
    "postures": { "posture:managed": ["node:os == 'linux'", "custom:managed == true"] },
    "acls": [ { "action": "accept", "src": ["alice@"], "dst": ["tag:db:5432"], "srcPosture": ["posture:managed"] } ] }`, 'test')
  const laptop = await register(r, 'laptop', await r.key())
  const db = await register(r, 'db', await r.key({ tags: ['tag:db'] }))
  const cl = await connect(r, laptop, { 'node:os': 'linux', 'node:tsVersion': '0.1.0' })
  const cd = await connect(r, db)
  t.teardown(async () => { await cl.close(); await cd.close() })
  await waitUntil(() => r.c.state.getNode(laptop.node.id)!.postureAttrs?.['node:os'] === 'linux', 'the hello\'s attributes are recorded')
  t.same(cd.peerNames(), [], 'not managed yet: the database does not know the laptop')
  t.same(cd.netmap!.filter, [], 'and lets nothing in')

  await r.c.state.setNodeAttrs('laptop', { set: { 'custom:managed': true } }, 'test')
  await waitUntil(() => cd.peerNames().includes('laptop') && cd.netmap!.filter.length > 0, 'managed: the laptop becomes a source')
  const tcp = cd.netmap!.filter.find(f => f.protos.includes(6))!
  t.same(tcp.srcs, [`${laptop.node.ipv4}/32`, `${laptop.node.ipv6}/128`], 'only the laptop')
  t.same(tcp.ports, [{ first: 5432, last: 5432 }], 'on the database port')

  await r.c.state.setNodeAttrs('laptop', { set: { 'custom:managed': false } }, 'test')
  await waitUntil(() => !cd.peerNames().includes('laptop') && cd.netmap!.filter.length === 0, 'no longer managed: access is gone')
  t.same(cl.peerNames(), [], 'the laptop lost the database as a peer too')
  t.same([...cl.problems, ...cd.problems], [])
})

t.test('autogroup:admin follows role changes', async t => {
  const r = await start(t, {}, true)
  await r.c.state.createUser({ name: 'bob', role: 'member' }, 'test')
  await r.c.policy.set(`{ "tagOwners": { "tag:db": ["autogroup:owner"] },
    "acls": [ { "action": "accept", "src": ["autogroup:admin"], "dst": ["tag:db:22"] } ] }`, 'test')
  t.equal(r.c.state.getUser('alice')!.role, 'owner', 'the first user owns the controller')
  const bobKey = (await r.c.state.createAuthKey({ user: 'bob', reusable: true, preapproved: true }, 'test')).key
  const laptop = await register(r, 'bob-laptop', bobKey)
  const db = await register(r, 'db', await r.key({ tags: ['tag:db'] }))
  await t.rejects(register(r, 'db2', bobKey, ['tag:db']), /tag/, 'a member does not own tag:db; the owner does')
  const cd = await connect(r, db)
  t.teardown(async () => { await cd.close() })
  t.same(cd.peerNames(), [], 'bob is a member: no access')

  await r.c.state.setUserRole('bob', 'admin', 'test')
  await waitUntil(() => cd.peerNames().includes('bob-laptop'), 'bob made admin: his laptop reaches the database')
  t.same(cd.netmap!.filter[0]!.srcs, [`${laptop.node.ipv4}/32`, `${laptop.node.ipv6}/128`])
  await r.c.state.setUserRole('bob', 'auditor', 'test')
  await waitUntil(() => cd.netmap!.filter.length === 0, 'no longer admin: access is gone')
  await t.rejects(r.c.state.setUserRole('alice', 'member', 'test'), { code: 'last_owner' }, 'the only owner stays owner')
})
