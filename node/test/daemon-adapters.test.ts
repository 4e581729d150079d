import t from 'tap'
import dgram from 'node:dgram'
import { promises as fs, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import type { Netmap } from '@warren/protocol'
import { startDaemon, type Daemon } from '../src/daemon/daemon.js'
import { createEngineDataPlane, freeUdpPort, pingOnce } from '../src/daemon/system-data-plane.js'
import { createFakeWireGuard, createFakeRouter, createFakeFirewall, createFakeCommandRunner } from '../src/testing.js'
import { startFakeController, fakePeer, until } from './daemon-fake-controller.js'

const KEY = `wrnauth-0123456789ab-${'c'.repeat(32)}`
const IFACE = 'wgadapt0'

/** fakeDns records what the daemon asks of MagicDNS. */
function fakeDns () {
  const d = { maps: [] as Netmap[], closed: 0, released: 0, serving: false }
  return Object.assign(d, {
    async set (nm: Netmap) { d.maps.push(nm); d.serving = true },
    async close () { d.closed++; d.serving = false },
    async release () { d.released++; d.serving = false }
  })
}

t.test('with the adapters\' fakes: up configures all, a crash leaves all, a restart changes nothing, down removes all', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'warrend-adapters-'))
  const ctl = await startFakeController()
  ctl.peers = [fakePeer(2), fakePeer(3)]
  ctl.filter = [{ srcs: ['100.64.1.2/32'], protos: [6], ports: [{ first: 22, last: 22 }] }]
  const wireguard = createFakeWireGuard({ interfaceName: IFACE })
  const router = createFakeRouter({ interfaceName: IFACE })
  let firewallReleased = 0
  const firewall = Object.assign(createFakeFirewall(), { release: async () => { firewallReleased++ } })
  const dns = fakeDns()
  const runner = createFakeCommandRunner().on(/^ping /, { stdout: '64 bytes from 100.64.1.2: icmp_seq=1 ttl=64 time=0.42 ms\n' })
  const daemons: Daemon[] = []
  t.teardown(async () => {
    for (const d of daemons) await d.close().catch(() => {})
    await ctl.close()
    await fs.rm(dir, { recursive: true, force: true })
  })
  const start = async (): Promise<Daemon> => {
    const d = await startDaemon({
      stateDir: join(dir, 'state'), socketPath: join(dir, 'd.sock'), interfaceName: IFACE, wireguardMode: 'userspace',
      logger: pino({ level: 'silent' }), transport: ctl.transport, endpoints: () => [], backoff: { minMs: 10, maxMs: 50 },
      dataPlane: ctx => createEngineDataPlane({ wireguard, router, firewall, dns, runner, freePort: async want => want }, ctx)
    })
    daemons.push(d)
    return d
  }
  const ssh = { iif: IFACE, family: 4 as const, src: '100.64.1.2', proto: 6, dport: 22 }
  const other = { ...ssh, src: '100.64.1.3' }

  const d1 = await start()
  await d1.up({ controller: 'https://ctl.test:8443', authKey: KEY, hostname: 'laptop' })
  await until('Running', async () => (await d1.status()).backendState === 'Running')
  const self = (await d1.status()).self!
  t.same(wireguard.device()!.peers.map(p => p.publicKey).sort(), ctl.peers.map(p => p.wgKey).sort(), 'WireGuard has both peers')
  t.equal(wireguard.device()!.listenPort, 41641, 'on the default listen port')
  t.ok(router.state()!.addresses.includes(`${self.ipv4}/32`), 'the mesh address is on the interface')
  t.equal(firewall.trace(ssh), 'accept', 'the filter lets the allowed peer in')
  t.equal(firewall.trace(other), 'reject', 'and refuses everything else from the mesh (a new connection is rejected)')
  t.equal(firewall.trace({ ...other, stray: true }), 'drop', 'a segment of no connection it allowed is dropped')
  t.equal(dns.maps.at(-1)!.peers.length, 2, 'MagicDNS follows the map')
  t.equal((await d1.ping('peer2')).latencyMs, 0.42)
  t.same(runner.matching(/^ping /)[0]!.argv, ['ping', '-c', '1', '-W', '2', '100.64.1.2'])

  // A crash: the process goes away without `down`.
  await d1.close()
  t.ok(wireguard.isUp, 'the interface survives the daemon')
  t.ok(router.state()!.addresses.includes(`${self.ipv4}/32`), 'so do its addresses')
  t.equal(firewall.trace(other), 'reject', 'and the firewall still refuses (fail-closed)')
  t.same([dns.released, dns.closed], [1, 0], 'MagicDNS stopped serving but the resolver was not restored')
  t.equal(firewallReleased, 1, 'the firewall was asked to end its nft session, which it does keeping the table')

  const wgChanges = wireguard.history.length
  const d2 = await start()
  t.equal((await d2.status()).backendState, 'Running', 'back from the saved map')
  const restored = wireguard.history.slice(wgChanges)
  t.ok(restored.length >= 1 && restored.every(c => !c.interface && c.added.length === 0 && c.removed.length === 0 && c.updated.length === 0), 'reconciling the saved map touched no WireGuard peer')
  t.ok(dns.serving, 'MagicDNS serves again')

  await d2.down()
  t.notOk(wireguard.isUp, 'down removes the interface')
  t.same([router.state()?.addresses ?? [], router.state()?.routes ?? []], [[], []], 'and its addresses and routes')
  t.equal(firewall.dump(), '', 'and the firewall table')
  t.equal(firewall.trace(other), 'untouched', 'so mesh traffic is no longer judged')
  t.equal(dns.closed, 1, 'and restores the resolver')
})

t.test('the WireGuard port is the wanted one when free, else a random free one', async t => {
  const taken = dgram.createSocket('udp4')
  await new Promise<void>(resolve => taken.bind(0, '0.0.0.0', resolve))
  t.teardown(() => taken.close())
  const busy = taken.address().port
  const got = await freeUdpPort(busy)
  t.not(got, busy, 'a taken port is not used')
  t.ok(got > 0)
  const free = await freeUdpPort(got)
  t.equal(free, got, 'a free port is kept')
})

t.test('ping reports the round trip, or says there was no reply', async t => {
  const runner = createFakeCommandRunner()
    .on(/100\.64\.0\.2$/, { stdout: '64 bytes from 100.64.0.2: icmp_seq=1 ttl=64 time=1.73 ms\n' })
    .on(/100\.64\.0\.9$/, { exitCode: 1, stdout: '1 packets transmitted, 0 received, 100% packet loss\n' })
  t.equal(await pingOnce(runner, '100.64.0.2'), 1.73)
  await t.rejects(pingOnce(runner, '100.64.0.9'), /no reply within 2 s/)
})
