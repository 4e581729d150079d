import t from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { netnsSkipReason, waitFor } from '../src/index.js'
import { createMesh, canPing, type MeshNode } from '../src/mesh.js'

/**
 * nodeAttrs end to end, with real processes in network namespaces: the policy gives
 * tag:rand randomize-client-port, so that node's WireGuard listens on a random port (the
 * other keeps the default), the two still reach each other, and only the tagged node is
 * told it has the attribute.
 */
const skip = netnsSkipReason()
const DEFAULT_PORT = 41641

const POLICY = `{
  "tagOwners": { "tag:rand": ["alice@"] },
  "acls": [{ "action": "accept", "src": ["*"], "dst": ["*:*"] }],
  "nodeAttrs": [{ "target": ["tag:rand"], "attr": ["randomize-client-port"] }],
}
`

t.test('randomize-client-port from the policy moves the node\'s WireGuard port', { skip, timeout: 580_000 }, async t => {
  const mesh = await createMesh(t, { hosts: ['rand', 'plain'] })
  const file = join(mesh.dir, 'policy.hujson')
  writeFileSync(file, POLICY)
  await mesh.admin('users', 'create', 'alice', '--email', 'alice@example.com')
  await mesh.admin('policy', 'set', file, '-m', 'random port for tag:rand')
  const key = async (...extra: string[]): Promise<string> =>
    JSON.parse(await mesh.admin('keys', 'create', '--user', 'alice', '--reusable', '--preapproved', ...extra, '--json')).key as string
  const rand = await mesh.join('rand', { authKey: await key('--tags', 'tag:rand') })
  const plain = await mesh.join('plain', { authKey: await key() })
  const listenPort = async (n: MeshNode): Promise<number> => Number((await n.host.exec(['wg', 'show', n.iface, 'listen-port'])).stdout.trim())

  t.not(await listenPort(rand), DEFAULT_PORT, 'the tagged node listens on another port')
  t.ok((await listenPort(rand)) > 0)
  t.equal(await listenPort(plain), DEFAULT_PORT, 'the other keeps the default port')
  t.same(Object.keys((await rand.status()).self?.attrs ?? {}), ['randomize-client-port'], 'the tagged node is told its attribute')
  t.equal((await plain.status()).self?.attrs, undefined, 'the other is told none')
  await waitFor(async () => await canPing(plain.host, rand.ipv4) && await canPing(rand.host, plain.ipv4),
    { timeoutMs: 120_000, message: 'the nodes ping each other over the random port' })
  t.pass('the nodes reach each other')
})
