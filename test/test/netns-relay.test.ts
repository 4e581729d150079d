import t, { type Test } from 'tap'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { generateWireGuardKeyPair } from '@warren/protocol'
import { createTopology, netnsSkipReason, type Host, type Topology, type ProcessHandle } from '../src/index.js'

const skip = netnsSkipReason()
const FIXTURE = join(dirname(fileURLToPath(import.meta.url)), '..', 'src', 'relay-fixture.js')

/**
 * natLab builds a relay host on the backbone and two nodes, each on a LAN behind its own
 * NAT router: `a` behind plain masquerade (endpoint-independent mapping), `b` behind
 * `masquerade fully-random` (symmetric: a new port per destination).
 */
async function natLab (t: Test): Promise<{ topo: Topology, relay: Host, a: Host, b: Host, routers: Host[] }> {
  const topo = await createTopology(t, { hosts: ['relay'] })
  const relay = topo.host('relay')
  const nodes: Host[] = []
  const routers: Host[] = []
  for (const [name, random] of [['a', false], ['b', true]] as const) {
    const router = await topo.addHost(`nat${name}`, { networks: ['backbone', `lan${name}`] })
    const node = await topo.addHost(name, { networks: [`lan${name}`] })
    await router.exec(['sysctl', '-qw', 'net.ipv4.ip_forward=1'])
    // nft 1.0.6 needs a newline after `fully-random`.
    const nat = `table ip nat {\n chain post {\n  type nat hook postrouting priority srcnat; policy accept;\n  oifname "eth0" masquerade${random ? ' fully-random' : ''}\n }\n}\n`
    await router.exec(['nft', '-f', '-'], { input: nat })
    await node.exec(['ip', 'route', 'add', 'default', 'via', router.interfaces[1]!.address])
    nodes.push(node)
    routers.push(router)
  }
  return { topo, relay, a: nodes[0]!, b: nodes[1]!, routers }
}

const lines = (p: ProcessHandle, re: RegExp): RegExpMatchArray[] => p.output().split('\n').map(l => l.match(re)).filter((m): m is RegExpMatchArray => m !== null)
const maxSeq = (p: ProcessHandle, re: RegExp): number => Math.max(0, ...lines(p, re).map(m => Number(m[1])))

t.test('kernel relay: binds through NATs (one symmetric), data both ways in the kernel, revocation stops it at once', { skip, timeout: 180_000 }, async t => {
  const { relay, a, b, routers } = await natLab(t)
  const dir = await mkdtemp(join(tmpdir(), 'warren-relay-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const ka = generateWireGuardKeyPair()
  const kb = generateWireGuardKeyPair()
  const before = (await relay.exec(['sysctl', '-n', 'net.ipv4.ip_forward'])).stdout.trim()
  const r = relay.spawn(['node', FIXTURE, 'relay', '--key-file', join(dir, 'relay.key'), '--pair', `${ka.publicKey},${kb.publicKey}`])
  const [, relayKey] = await r.waitForLine(/^relay (\S+) (\d+)$/, 30_000)
  const [, id, pa, pb] = await r.waitForLine(/^allocated (\S+) (\d+) (\d+)$/, 30_000)
  t.equal((await relay.exec(['sysctl', '-n', 'net.ipv4.ip_forward'])).stdout.trim(), '1', 'the relay turned forwarding on')
  t.match((await relay.exec(['nft', 'list', 'table', 'inet', 'warren_relay'])).stdout, new RegExp(`elements = \\{ (${pa}, ${pb}|${pb}, ${pa}) \\}`), 'the ports are in the relay table')

  const peer = (h: Host, k: typeof ka, port: string): ProcessHandle =>
    h.spawn(['node', FIXTURE, 'peer', '--key', k.privateKey, '--relay-key', relayKey!, '--relay', `${relay.address}:${port}`, '--allocation', id!])
  const pA = peer(a, ka, pa!)
  const pB = peer(b, kb, pb!)
  const [, seenA] = await pA.waitForLine(/^bound (\S+)$/, 30_000)
  const [, seenB] = await pB.waitForLine(/^bound (\S+)$/, 30_000)
  t.equal(seenA!.split(':')[0], routers[0]!.address, 'the relay saw A at its NAT router\'s address')
  t.equal(seenB!.split(':')[0], routers[1]!.address, 'and B at its symmetric NAT\'s address')

  await pA.waitForLine(/^recv 20$/, 30_000)
  await pB.waitForLine(/^recv 20$/, 30_000)
  t.pass('packets flow both ways through the relay')
  process.kill(r.pid, 'SIGUSR2')
  const [, statsText] = await r.waitForLine(/^stats (.*)$/, 10_000)
  const stats = JSON.parse(statsText!) as { dataPackets: number, binds: number }
  t.equal(stats.dataPackets, 0, 'the relay process never received a data packet')
  t.ok(stats.binds >= 2)

  // Revoke: from the moment the relay says it released, nothing more gets through.
  process.kill(r.pid, 'SIGUSR1')
  await r.waitForLine(/^released$/, 10_000)
  const sentByA = maxSeq(pA, /^sent (\d+)$/) + 10
  const sentByB = maxSeq(pB, /^sent (\d+)$/) + 10
  await pA.waitForLine(new RegExp(`^sent ${sentByA + 30}$`), 30_000)
  await pB.waitForLine(new RegExp(`^sent ${sentByB + 30}$`), 30_000)
  t.ok(maxSeq(pB, /^recv (\d+)$/) <= sentByA, 'B gets nothing A sent after the release')
  t.ok(maxSeq(pA, /^recv (\d+)$/) <= sentByB, 'A gets nothing B sent after the release')
  t.notMatch((await relay.exec(['nft', 'list', 'table', 'inet', 'warren_relay'])).stdout, /elements/, 'the table holds no elements')

  await r.kill('SIGTERM', 10_000)
  t.match(r.output(), /stopped/)
  t.equal((await relay.exec(['nft', 'list', 'tables'])).stdout.includes('warren_relay'), false, 'stop removes the table')
  t.equal((await relay.exec(['sysctl', '-n', 'net.ipv4.ip_forward'])).stdout.trim(), before, 'stop restores forwarding')
})
