import t from 'tap'
import { fileURLToPath } from 'node:url'
import { existsSync } from 'node:fs'
import { generateWireGuardKeyPair, type Netmap, type Node, type Peer } from '@warren/protocol'
import {
  createCommandRunner, createRecordingRunner, createWireGuard, createRouter, createEngine, detectKernelWireGuard,
  type Engine, type RecordingRunner, type WireGuard, type EngineLocal
} from '@warren/node'
import { createTopology, netnsSkipReason, waitFor, type Host, type Topology, type TestLike } from '../src/index.js'

const skip = netnsSkipReason()
const PORT = 41641
const MUTATING = /^(wg set|wireguard-go|ip (-6 )?(addr|route) (add|del|replace)|ip link (add|del|set))/

/** MeshHost is one namespace running the real engine over wireguard-go, wg and ip. */
interface MeshHost {
  host: Host
  node: Node
  local: EngineLocal
  runner: RecordingRunner
  wireguard: WireGuard
  engine: Engine
}

function meshNode (i: number, host: Host): Node & { privateKey: string } {
  const kp = generateWireGuardKeyPair()
  return {
    id: `n${i}`, name: host.name, fqdn: `${host.name}.warren.internal`, user: 'alice', tags: [],
    machineKey: generateWireGuardKeyPair().publicKey, wgKey: kp.publicKey,
    ipv4: `100.64.0.${i}`, ipv6: `fd7a:115c:a1e0::${i}`,
    status: 'active', ephemeral: false, online: true, created: new Date().toISOString(),
    endpoints: [`${host.address}:${PORT}`], privateKey: kp.privateKey
  }
}

const peerOf = (n: Node): Peer => ({ id: n.id, name: n.name, fqdn: n.fqdn, user: n.user, tags: n.tags, wgKey: n.wgKey, ipv4: n.ipv4, ipv6: n.ipv6, endpoints: n.endpoints, online: true })
const netmap = (self: Node, peers: Node[]): Netmap => ({ self, peers: peers.map(peerOf), filter: [], dns: { domain: 'warren.internal', magicDns: true } })

async function meshHosts (t: TestLike, count: number): Promise<{ topo: Topology, mesh: MeshHost[] }> {
  const topo = await createTopology(t, { hosts: count })
  const mesh = topo.hosts.map((host, i) => {
    const { privateKey, ...node } = meshNode(i + 1, host)
    const runner = createRecordingRunner(createCommandRunner({ netns: host.netns }))
    const interfaceName = host.interfaceName()
    const wireguard = createWireGuard({ runner, interfaceName })
    const engine = createEngine({ wireguard, router: createRouter({ runner, interfaceName }) })
    return { host, node, local: { privateKey, interfaceName, listenPort: PORT }, runner, wireguard, engine }
  })
  return { topo, mesh }
}

async function pings (from: Host, to: string, timeoutMs = 60_000): Promise<void> {
  await waitFor(async () => (await from.exec(['ping', '-c', '1', '-W', '1', to], { allowFail: true })).exitCode === 0,
    { timeoutMs, intervalMs: 100, message: `${from.name} to ping ${to}` })
}

async function handshakeWith (m: MeshHost, peer: Node): Promise<Date | undefined> {
  return (await m.wireguard.status()).peers.find(p => p.publicKey === peer.wgKey)?.latestHandshake
}

t.test('kernel WireGuard is detected as unavailable here, so auto mode runs wireguard-go', { skip }, async t => {
  const topo = await createTopology(t, { hosts: 1 })
  const host = topo.hosts[0]!
  const runner = createCommandRunner({ netns: host.netns })
  if (await detectKernelWireGuard(runner)) {
    t.comment('this kernel has WireGuard: the userspace fallback is not exercised here')
    t.equal(await createWireGuard({ runner, interfaceName: host.interfaceName() }).up(), 'kernel')
    return
  }
  const kernel = createWireGuard({ runner, interfaceName: host.interfaceName('k'), mode: 'kernel' })
  const err = await kernel.up().catch(e => e)
  t.equal(err.code, 'wireguard_unavailable')
  t.match(err.message, /kernel WireGuard is not available: `ip link add \S+ type wireguard` failed .*modprobe wireguard.*userspace/)
  const auto = createWireGuard({ runner, interfaceName: host.interfaceName() })
  t.equal(await auto.up(), 'userspace')
  const kind = JSON.parse((await host.exec(['ip', '-d', '-j', 'link', 'show', 'dev', host.interfaceName()])).stdout)[0].linkinfo.info_kind
  t.equal(kind, 'tun', 'the interface is wireguard-go\'s TUN device')
  await auto.close()
})

t.test('two hosts reach each other over the mesh; removing a third peer does not disturb them', { skip }, async t => {
  const { mesh } = await meshHosts(t, 3)
  const [a, b, c] = mesh as [MeshHost, MeshHost, MeshHost]
  for (const m of mesh) {
    const r = await m.engine.apply(netmap(m.node, mesh.filter(x => x !== m).map(x => x.node)), m.local)
    t.equal(r.peers, 2, `${m.host.name} has two peers`)
  }
  await pings(a.host, b.node.ipv4)
  await pings(b.host, a.node.ipv4)
  await pings(a.host, c.node.ipv4)
  await pings(a.host, b.node.ipv6)
  // WireGuard retries a handshake whose answer took longer than its 5 s rekey timeout (a
  // loaded machine): let that window pass, so a later handshake can only be a disturbance.
  await waitFor(async () => {
    const at = await handshakeWith(a, b.node)
    return at !== undefined && Date.now() - at.getTime() > 7000
  }, { timeoutMs: 60_000, intervalMs: 500, message: 'a settled session between a and b' })
  const before = await handshakeWith(a, b.node)
  t.ok(before !== undefined, 'a and b have a session')

  // A steady ping stream from a to b while c is removed from a's map.
  const stream = a.host.spawn(['ping', '-n', '-i', '0.05', '-c', '60', '-W', '1', b.node.ipv4])
  await stream.waitForLine(/icmp_seq=5 /, 5000)
  const removed = await a.engine.apply(netmap(a.node, [b.node]), a.local)
  t.same(removed.wireguard.removed, [c.node.wgKey], 'only c is removed')
  t.same(removed.wireguard.added, [])
  t.same(removed.wireguard.updated, [])
  const exit = await stream.exited
  const summary = /(\d+) packets transmitted, (\d+) received/.exec(stream.output())
  t.equal(exit.code, 0, 'the ping stream succeeded')
  t.same(summary?.slice(1), ['60', '60'], 'no packet was lost while c was removed')
  t.same(await handshakeWith(a, b.node), before, 'the session with b was not renegotiated')
  t.notOk((await a.wireguard.status()).peers.some(p => p.publicKey === c.node.wgKey), 'c is gone from WireGuard')
  const toC = await a.host.exec(['ping', '-c', '1', '-W', '1', c.node.ipv4], { allowFail: true })
  t.not(toC.exitCode, 0, 'c is no longer reachable from a')
})

t.test('applying the same netmap twice runs no mutating command', { skip }, async t => {
  const { mesh } = await meshHosts(t, 2)
  const [a, b] = mesh as [MeshHost, MeshHost]
  const nm = netmap(a.node, [b.node])
  await a.engine.apply(nm, a.local)
  const first = a.runner.matching(MUTATING).length
  t.ok(first >= 5, `the first apply changed the system (${first} commands)`)
  t.ok(a.runner.matching(/^wg set/).length >= 1)
  t.ok(a.runner.matching(/^ip (-6 )?addr add/).length === 2)
  a.runner.calls.length = 0
  const r = await a.engine.apply(structuredClone(nm), a.local)
  t.same(a.runner.matching(MUTATING).map(c => c.argv.join(' ')), [], 'the second apply only read state')
  t.same(r.wireguard, { interface: false, added: [], updated: [], removed: [] })
  t.ok(r.durationMs > 0, `apply took ${r.durationMs.toFixed(1)} ms`)
  t.notOk(a.runner.calls.some(c => c.argv.join(' ').includes(a.local.privateKey)), 'no command line carried the private key')
})

t.test('close removes the interface, its addresses and routes', { skip }, async t => {
  const { mesh } = await meshHosts(t, 2)
  const [a, b] = mesh as [MeshHost, MeshHost]
  await a.engine.apply(netmap(a.node, [b.node]), a.local)
  const ifname = a.local.interfaceName
  const routes4 = async () => (await a.host.exec(['ip', 'route', 'show'])).stdout
  const routes6 = async () => (await a.host.exec(['ip', '-6', 'route', 'show'])).stdout
  const addrs = async () => (await a.host.exec(['ip', 'addr', 'show'])).stdout
  t.match(await routes4(), /100\.64\.0\.0\/10 dev /)
  t.match(await routes6(), /fd7a:115c:a1e0::\/48 dev /)
  t.match(await addrs(), /inet 100\.64\.0\.1\/32/)
  await a.engine.close()
  t.not((await a.host.exec(['ip', 'link', 'show', 'dev', ifname], { allowFail: true })).exitCode, 0, 'the interface is gone')
  t.notMatch(await routes4(), /100\.64/)
  t.notMatch(await routes6(), /fd7a:115c:a1e0/)
  t.notMatch(await addrs(), /100\.64\.0\.1|fd7a:115c:a1e0::1/)
  t.notOk(existsSync(`/var/run/wireguard/${ifname}.sock`), 'wireguard-go has released its control socket')
  // wireguard-go exits on its own once its link is gone.
  await waitFor(async () => (await a.host.pids()).length === 0, { timeoutMs: 60_000, message: 'wireguard-go to exit' })
  t.pass('no wireguard-go process is left')
})

t.test('a wireguard-go interface survives the death of the process that made it', { skip }, async t => {
  const topo = await createTopology(t, { hosts: 2 })
  const [ha, hb] = topo.hosts as [Host, Host]
  const { privateKey } = meshNode(1, ha)
  const peer = meshNode(2, hb)
  const config = { interfaceName: ha.interfaceName(), privateKey, listenPort: PORT, peers: [{ publicKey: peer.wgKey, allowedIps: ['100.64.0.2/32'], endpoint: `${hb.address}:${PORT}`, persistentKeepalive: 25 }] }
  const holderScript = fileURLToPath(new URL('./netns-wireguard-holder.js', import.meta.url))
  const holder = ha.spawn([process.execPath, holderScript], { env: { WARREN_TEST_WG_CONFIG: JSON.stringify(config) } })
  await holder.waitForLine(/^ready userspace/, 15_000)
  await holder.kill('SIGKILL')
  const dump = (await ha.exec(['wg', 'show', config.interfaceName, 'dump'])).stdout
  t.match(dump, peer.wgKey, 'the peer is still configured after its creator died')
  t.equal((await ha.exec(['ip', 'link', 'show', 'dev', config.interfaceName], { allowFail: true })).exitCode, 0, 'the interface is still there')
  // A restarted daemon adopts it as it is, then `down` removes it.
  const runner = createRecordingRunner(createCommandRunner({ netns: ha.netns }))
  const again = createWireGuard({ runner, interfaceName: config.interfaceName })
  t.equal(await again.up(), 'userspace')
  t.same(await again.set(config), { interface: false, added: [], updated: [], removed: [] }, 'nothing to change after a restart')
  t.same(runner.matching(MUTATING), [], 'no wireguard-go was started again')
  await again.close()
  t.not((await ha.exec(['ip', 'link', 'show', 'dev', config.interfaceName], { allowFail: true })).exitCode, 0)
})
