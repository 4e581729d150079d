import t, { type Test } from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { LocalPeerStatus } from '@warren/protocol'
import { createNatLab, netnsSkipReason, waitFor, type ProcessHandle } from '../src/index.js'
import { createMesh, canConnect, FLOW_ARGV, type Mesh, type MeshNode } from '../src/mesh.js'

/**
 * Path selection with real controller and daemons: the daemons probe each other from
 * the WireGuard port (the shared port), choose a direct path when probes are answered,
 * set it as the peer's WireGuard endpoint and show it in `warren status`; the policy is
 * enforced on that path as on any other.
 */
const skip = netnsSkipReason()

/** POLICY lets tag:a reach tag:b on TCP 80 and nothing else. */
const POLICY = `{
  "tagOwners": { "tag:a": ["alice@"], "tag:b": ["alice@"] },
  "acls": [ { "action": "accept", "src": ["tag:a"], "dst": ["tag:b:80"], "proto": "tcp" } ],
}
`

/** joinPair makes the policy and joins `a` (tag:a) and `b` (tag:b); b serves TCP 22 and 80. */
async function joinPair (mesh: Mesh, names: [string, string]): Promise<[MeshNode, MeshNode]> {
  await mesh.admin('users', 'create', 'alice', '--email', 'alice@example.com')
  const file = join(mesh.dir, 'policy.hujson')
  writeFileSync(file, POLICY)
  await mesh.admin('policy', 'set', file, '-m', 'paths')
  const key = async (tag: string): Promise<string> =>
    JSON.parse(await mesh.admin('keys', 'create', '--user', 'alice', '--reusable', '--preapproved', '--tags', tag, '--json')).key as string
  const a = await mesh.join(names[0], { authKey: await key('tag:a') })
  const b = await mesh.join(names[1], { authKey: await key('tag:b') })
  const server: ProcessHandle = b.host.spawn([...FLOW_ARGV, 'serve', '22,80'])
  await server.waitForLine(/^listening$/, 60_000)
  return [a, b]
}

async function peerOf (n: MeshNode, other: MeshNode): Promise<LocalPeerStatus | undefined> {
  return (await n.status()).peers.find(p => p.wgKey === other.wgKey)
}

/** direct waits until `n` uses a direct path to `other` and returns it. */
async function direct (n: MeshNode, other: MeshNode): Promise<NonNullable<LocalPeerStatus['path']>> {
  return await waitFor(async () => {
    const p = await peerOf(n, other)
    return p?.path?.kind === 'direct' ? p.path : undefined
  }, { timeoutMs: 120_000, message: `${n.name} choosing a direct path to ${other.name}` })
}

/** checkPathInUse: WireGuard sends to the chosen endpoint, and status says so in text and JSON. */
async function checkPathInUse (t: Test, mesh: Mesh, n: MeshNode, other: MeshNode, want: string): Promise<void> {
  const path = await direct(n, other)
  t.match(path.endpoint, new RegExp(`^${want.replaceAll('.', '\\.')}:\\d+$`), `${n.name} reaches ${other.name} directly at ${want}`)
  t.type(path.latencyMs, 'number', 'with a measured latency')
  const wg = await n.host.exec(['wg', 'show', n.iface, 'endpoints'])
  t.match(wg.stdout, `${other.wgKey}\t${path.endpoint}`, 'WireGuard\'s endpoint for the peer is the chosen one')
  const json = JSON.parse((await mesh.warren(['status', '--socket', n.socket, '--json'])).stdout) as { peers: LocalPeerStatus[] }
  t.equal(json.peers.find(p => p.wgKey === other.wgKey)?.path?.kind, 'direct', 'warren status --json shows the path')
  t.match((await mesh.warren(['status', '--socket', n.socket])).stdout, new RegExp(`${other.name}\\s.*direct \\d`), 'warren status shows it')
}

/** checkPolicy: on the direct path, the allowed port connects and a denied one stays denied. */
async function checkPolicy (t: Test, a: MeshNode, b: MeshNode): Promise<void> {
  await waitFor(async () => await canConnect(a.host, b.ipv4, 80, 2000), { timeoutMs: 120_000, message: `${a.name} -> ${b.name}:80 (allowed)` })
  t.notOk(await canConnect(a.host, b.ipv4, 22, 1000), `${a.name} -> ${b.name}:22 stays denied on the direct path`)
  t.notOk(await canConnect(b.host, a.ipv4, 80, 1000), `${b.name} -> ${a.name}:80 is denied: access is one way`)
}

t.test('flat network: the daemons confirm a direct path by probes and use it', { skip, timeout: 580_000 }, async t => {
  const mesh = await createMesh(t, { hosts: ['a', 'b'] })
  const [a, b] = await joinPair(mesh, ['a', 'b'])
  await checkPathInUse(t, mesh, a, b, b.host.address)
  await checkPathInUse(t, mesh, b, a, a.host.address)
  await checkPolicy(t, a, b)
})

t.test('two nodes behind one NAT go direct over their LAN addresses', { skip, timeout: 580_000 }, async t => {
  const lab = await createNatLab(t, { sides: [{ name: 'l', nat: 'cone', nodes: 2 }] })
  const mesh = await createMesh(t, { hosts: [], lab })
  const [a, b] = await joinPair(mesh, ['l1', 'l2'])
  await checkPathInUse(t, mesh, a, b, b.host.address)
  await checkPathInUse(t, mesh, b, a, a.host.address)
  await checkPolicy(t, a, b)
})
