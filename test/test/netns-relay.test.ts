import t, { type Test } from 'tap'
import { join } from 'node:path'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { generateWireGuardKeyPair } from '@warren/protocol'
import { netnsSkipReason, createNatLab, createTopology, leaveFromPort, testIpv6Prefix, startLabWireGuard, waitFor, RELAY_FIXTURE as FIXTURE, type Host, type ProcessHandle } from '../src/index.js'

const skip = netnsSkipReason()

/**
 * relayLab: the relay on the lab's controller host (off the core router), node a1 behind a
 * cone NAT, node b1 behind a symmetric one (`masquerade fully-random`).
 */
async function relayLab (t: Test): Promise<{ relay: Host, a: Host, b: Host, publicA: string, publicB: string }> {
  const lab = await createNatLab(t, { sides: [{ name: 'a', nat: 'cone' }, { name: 'b', nat: 'symmetric' }] })
  return { relay: lab.controller, a: lab.node('a1'), b: lab.node('b1'), publicA: lab.side('a').publicAddress, publicB: lab.side('b').publicAddress }
}

const lines = (p: ProcessHandle, re: RegExp): RegExpMatchArray[] => p.output().split('\n').map(l => l.match(re)).filter((m): m is RegExpMatchArray => m !== null)
const maxSeq = (p: ProcessHandle, re: RegExp): number => Math.max(0, ...lines(p, re).map(m => Number(m[1])))

/**
 * bothReceive waits until each peer received 20 packets through the relay. Counted, not by
 * sequence number: the side that bound first sent packets the relay dropped until the
 * pair was bound, so under load its first twenty may never arrive.
 */
async function bothReceive (pA: ProcessHandle, pB: ProcessHandle): Promise<void> {
  for (const [p, name] of [[pA, 'A'], [pB, 'B']] as const) {
    await waitFor(() => lines(p, /^recv (\d+)$/).length >= 20, { timeoutMs: 30_000, message: `${name} receiving 20 packets through the relay` })
  }
}

t.test('kernel relay: binds through NATs (one symmetric), data both ways in the kernel, revocation stops it at once', { skip, timeout: 180_000 }, async t => {
  const { relay, a, b, publicA, publicB } = await relayLab(t)
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
    h.spawn(['node', FIXTURE, 'peer', '--key', k.privateKey, '--relay-key', relayKey!, '--relay', `${relay.address}:${port}`, `--allocation=${id!}`])
  const pA = peer(a, ka, pa!)
  const pB = peer(b, kb, pb!)
  const [, seenA] = await pA.waitForLine(/^bound (\S+)$/, 30_000)
  const [, seenB] = await pB.waitForLine(/^bound (\S+)$/, 30_000)
  t.equal(seenA!.split(':')[0], publicA, 'the relay saw A at its NAT router\'s address')
  t.equal(seenB!.split(':')[0], publicB, 'and B at its symmetric NAT\'s address')

  await bothReceive(pA, pB)
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

t.test('kernel relay: wireguard-go on both nodes (one behind a symmetric NAT) pings through the relay', { skip, timeout: 180_000 }, async t => {
  const { relay, a, b } = await relayLab(t)
  const dir = await mkdtemp(join(tmpdir(), 'warren-relay-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const ka = generateWireGuardKeyPair()
  const kb = generateWireGuardKeyPair()
  const r = relay.spawn(['node', FIXTURE, 'relay', '--key-file', join(dir, 'relay.key'), '--pair', `${ka.publicKey},${kb.publicKey}`])
  const [, relayKey] = await r.waitForLine(/^relay (\S+) (\d+)$/, 30_000)
  const [, id, pa, pb] = await r.waitForLine(/^allocated (\S+) (\d+) (\d+)$/, 30_000)
  const WG = 51820
  const HELPER = 51999
  for (const [h, me, other, port, addr, peerAddr] of [[a, ka, kb, pa!, '100.64.0.1', '100.64.0.2'], [b, kb, ka, pb!, '100.64.0.2', '100.64.0.1']] as const) {
    await startLabWireGuard(h, { privateKey: me.privateKey, address: addr, listenPort: WG, peer: { publicKey: other.publicKey, address: peerAddr, endpoint: `${relay.address}:${port}` } })
    await leaveFromPort(h, HELPER, WG)
    h.spawn(['node', FIXTURE, 'bind', '--key', me.privateKey, '--relay-key', relayKey!, '--relay', `${relay.address}:${port}`, `--allocation=${id!}`, '--local-port', String(HELPER)])
  }
  await r.waitForLine(new RegExp(`^bind ${id} 0$`), 30_000)
  await r.waitForLine(new RegExp(`^bind ${id} 1$`), 30_000)
  await waitFor(async () => (await a.exec(['ping', '-c', '1', '-W', '1', '100.64.0.2'], { allowFail: true })).exitCode === 0, { timeoutMs: 60_000, message: 'a ping from a to b through the relay' })
  const ping = await b.exec(['ping', '-c', '5', '-i', '0.2', '-W', '2', '100.64.0.1'], { allowFail: true })
  t.equal(ping.exitCode, 0, 'b pings a back through the relay')
  process.kill(r.pid, 'SIGUSR2')
  const [, statsText] = await r.waitForLine(/^stats (.*)$/, 10_000)
  t.equal((JSON.parse(statsText!) as { dataPackets: number }).dataPackets, 0, 'the relay process never received a WireGuard packet')
})

t.test('kernel relay over IPv6: binds from IPv6 addresses, data both ways in the kernel (ip6 rewrites), forwarding put back at stop', { skip, timeout: 180_000 }, async t => {
  const topology = await createTopology(t, { hosts: ['relay', 'a', 'b'] })
  const prefix = testIpv6Prefix()
  const v6 = new Map(topology.hosts.map((h, i) => [h.name, `${prefix}::${i + 1}`]))
  for (const h of topology.hosts) await h.exec(['ip', '-6', 'addr', 'add', `${v6.get(h.name)!}/64`, 'dev', 'eth0', 'nodad'])
  const [relay, a, b] = topology.hosts as [Host, Host, Host]
  const dir = await mkdtemp(join(tmpdir(), 'warren-relay-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const ka = generateWireGuardKeyPair()
  const kb = generateWireGuardKeyPair()
  const before = (await relay.exec(['sysctl', '-n', 'net.ipv6.conf.all.forwarding'])).stdout.trim()
  const r = relay.spawn(['node', FIXTURE, 'relay', '--listen', '::', '--key-file', join(dir, 'relay.key'), '--pair', `${ka.publicKey},${kb.publicKey}`])
  const [, relayKey] = await r.waitForLine(/^relay (\S+) (\d+)$/, 30_000)
  const [, id, pa, pb] = await r.waitForLine(/^allocated (\S+) (\d+) (\d+)$/, 30_000)
  t.equal((await relay.exec(['sysctl', '-n', 'net.ipv6.conf.all.forwarding'])).stdout.trim(), '1', 'the relay turned IPv6 forwarding on')

  const peer = (h: Host, k: typeof ka, port: string): ProcessHandle =>
    h.spawn(['node', FIXTURE, 'peer', '--key', k.privateKey, '--relay-key', relayKey!, '--relay', `[${v6.get('relay')!}]:${port}`, '--allocation', id!])
  const pA = peer(a, ka, pa!)
  const pB = peer(b, kb, pb!)
  const [, seenA] = await pA.waitForLine(/^bound (\S+)$/, 30_000)
  const [, seenB] = await pB.waitForLine(/^bound (\S+)$/, 30_000)
  t.match(seenA, `[${v6.get('a')!}]:`, 'the relay saw A at its IPv6 address')
  t.match(seenB, `[${v6.get('b')!}]:`, 'and B at its')
  t.match((await relay.exec(['nft', 'list', 'table', 'inet', 'warren_relay'])).stdout, /set bound6 \{[^}]*elements = \{ \d+, \d+ \}/, 'the forwards are in the IPv6 set')

  await bothReceive(pA, pB)
  t.pass('packets flow both ways through the relay over IPv6')
  process.kill(r.pid, 'SIGUSR2')
  const [, statsText] = await r.waitForLine(/^stats (.*)$/, 10_000)
  t.equal((JSON.parse(statsText!) as { dataPackets: number }).dataPackets, 0, 'the relay process never received a data packet')

  await r.kill('SIGTERM', 10_000)
  t.match(r.output(), /stopped/)
  t.equal((await relay.exec(['sysctl', '-n', 'net.ipv6.conf.all.forwarding'])).stdout.trim(), before, 'stop restores IPv6 forwarding')
})
