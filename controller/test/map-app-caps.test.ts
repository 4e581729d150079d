import t from 'tap'
import { capabilitiesOf } from '@warren/protocol'
import { createPolicyEngine, parsePolicy, type Policy } from '../src/policy/index.js'
import { startMapTestServer, connectReady, waitUntil } from './map-harness.js'

// A grant's `app` travels in the destination's map only: a node learns the capabilities
// others hold on it, never those it holds elsewhere, nor those between other nodes.

const users = [{ name: 'alice' }]

function policy (role: string): Policy {
  const r = parsePolicy(`{
    "tagOwners": { "tag:web": ["alice@"], "tag:client": ["alice@"], "tag:other": ["alice@"] },
    "grants": [
      { "src": ["tag:client"], "dst": ["tag:web"], "ip": ["tcp:443"], "app": { "example.com/cap/web": [{ "role": "${role}" }] } },
      { "src": ["tag:other"], "dst": ["tag:other"], "ip": ["*"] },
    ],
  }`, { users })
  if (r.policy === undefined) throw new Error(r.errors.map(e => e.message).join('\n'))
  return r.policy
}

t.test('only the destination of an app grant learns the capabilities, and a change of values reaches it alone', async t => {
  const engine = createPolicyEngine(policy('viewer'), users)
  const srv = await startMapTestServer({ policy: engine })
  t.teardown(srv.close)
  const web = srv.add({ name: 'web', tags: ['tag:web'] })
  const client = srv.add({ name: 'client', tags: ['tag:client'] })
  const other = srv.add({ name: 'other', tags: ['tag:other'] })
  const clients = await Promise.all([web, client, other].map(async n => await connectReady(srv.url, n)))
  t.teardown(async () => { for (const c of clients) await c.close() })
  const [atWeb, atClient, atOther] = clients

  t.same(capabilitiesOf(atWeb!.netmap!.filter, client.node.ipv4), { 'example.com/cap/web': [{ role: 'viewer' }] }, 'web knows what client may do on it')
  t.same(capabilitiesOf(atWeb!.netmap!.filter, client.node.ipv6), { 'example.com/cap/web': [{ role: 'viewer' }] })
  t.same(atClient!.peerNames(), ['web'], 'client sees web as a peer')
  const everything = (c: typeof atClient): string => JSON.stringify(c!.messages)
  t.notOk(everything(atClient).includes('example.com/cap/web'), 'the source is never told its capabilities')
  t.notOk(everything(atOther).includes('example.com/cap/web'), 'nor is a node outside the grant')

  srv.service.mesh.setPolicy(policy('admin'), users)
  await waitUntil(() => JSON.stringify(capabilitiesOf(atWeb!.netmap!.filter, client.node.ipv4)) === '{"example.com/cap/web":[{"role":"admin"}]}', 'the new role at web')
  // later changes that do reach client and other: whatever the policy change sent them came before
  srv.add({ name: 'web2', tags: ['tag:web'] })
  srv.add({ name: 'other2', tags: ['tag:other'] })
  await waitUntil(() => atClient!.peerNames().includes('web2') && atOther!.peerNames().includes('other2'), 'the new nodes at client and other')
  t.notOk(everything(atClient).includes('example.com/cap/web'), 'the change did not reach the source either')
  t.notOk(everything(atOther).includes('example.com/cap/web'))
  t.same(clients.flatMap(c => c.problems), [])
})
