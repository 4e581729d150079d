import t from 'tap'
import { promises as fs, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import type { FilterRule } from '@warren/protocol'
import { connect, createLocalClient } from '@warren/sdk'
import { startDaemon, type Daemon } from '../src/daemon/daemon.js'
import { createEngineDataPlane } from '../src/daemon/system-data-plane.js'
import { createFakeWireGuard, createFakeRouter, createFakeFirewall, createFakeCommandRunner } from '../src/testing.js'
import { startFakeController, fakePeer, until } from './daemon-fake-controller.js'

// A grant's `app` reaches the destination node as capability rules in its filter: the
// daemon answers whois with them (LocalAPI and SDK), and its firewall lets nothing in for them.

const KEY = `wrnauth-0123456789ab-${'c'.repeat(32)}`
const IFACE = 'wgcaps0'
const WEB_ADMIN = { 'example.com/cap/web': [{ role: 'admin' }] }

t.test('whois tells the capabilities the map gives a caller here; the firewall opens nothing for them', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'warrend-caps-'))
  const ctl = await startFakeController()
  ctl.peers = [fakePeer(2), fakePeer(3)]
  const ssh: FilterRule = { srcs: ['100.64.1.2/32'], protos: [6], ports: [{ first: 22, last: 22 }] }
  ctl.filter = [
    ssh,
    { srcs: ['100.64.1.2/32', '100.64.1.3/32', 'fd7a:115c:a1e0:ab12::1:3/128'], protos: [], ports: [], caps: WEB_ADMIN },
    { srcs: ['100.64.1.3/32'], protos: [], ports: [], caps: { 'example.com/cap/web': [{ role: 'viewer' }], 'example.com/cap/audit': [] } }
  ]
  const firewall = createFakeFirewall()
  const wireguard = createFakeWireGuard({ interfaceName: IFACE })
  const router = createFakeRouter({ interfaceName: IFACE })
  const dns = { async set () {}, async close () {}, async release () {} }
  let d: Daemon | undefined
  t.teardown(async () => {
    await d?.close().catch(() => {})
    await ctl.close()
    await fs.rm(dir, { recursive: true, force: true })
  })
  const socketPath = join(dir, 'd.sock')
  d = await startDaemon({
    stateDir: join(dir, 'state'), socketPath, interfaceName: IFACE, wireguardMode: 'userspace',
    logger: pino({ level: 'silent' }), transport: ctl.transport, endpoints: () => [], backoff: { minMs: 10, maxMs: 50 },
    dataPlane: ctx => createEngineDataPlane({ wireguard, router, firewall, dns, runner: createFakeCommandRunner(), freePort: async want => want }, ctx)
  })
  await d.up({ controller: 'https://ctl.test:8443', authKey: KEY, hostname: 'web' })
  await until('Running', async () => (await d!.status()).backendState === 'Running')

  const probe = { iif: IFACE, family: 4 as const, proto: 6, dport: 22 }
  t.equal(firewall.trace({ ...probe, src: '100.64.1.2' }), 'accept', 'the ssh rule still lets peer2 in')
  t.equal(firewall.trace({ ...probe, src: '100.64.1.3' }), 'reject', 'a capability is no access: peer3 is refused')
  t.equal(firewall.trace({ ...probe, src: '100.64.1.3', dport: 443 }), 'reject', 'on any port')

  t.same(d.whois('100.64.1.2').capabilities, WEB_ADMIN)
  t.same(d.whois('100.64.1.3:51000').capabilities, {
    'example.com/cap/web': [{ role: 'admin' }, { role: 'viewer' }],
    'example.com/cap/audit': []
  }, 'IP:port is read as IP; values of one capability from two rules merge in order')
  t.same(d.whois('[fd7a:115c:a1e0:ab12::1:3]:443').capabilities, WEB_ADMIN, 'from the IPv6 address, what the rules give that address')
  t.same(d.whois('100.64.0.1').capabilities, {}, 'this node itself holds nothing it was not granted')
  t.throws(() => d!.whois('100.64.1.3:port'), { code: 'bad_ip' })

  const local = createLocalClient({ socketPath })
  t.same((await local.whois('100.64.1.2:22')).capabilities, WEB_ADMIN, 'the LocalAPI answers the same')
  const w = await connect({ socket: socketPath, timeoutMs: 10_000 })
  const who = await w.whois('100.64.1.2')
  t.same([who.node.name, who.capabilities], ['peer2', WEB_ADMIN], 'and so does the SDK, for an app to authorize by')

  await w.close()

  ctl.delta({ filter: [ssh] })
  await until('the revoked capability is gone', () => Object.keys(d!.whois('100.64.1.2').capabilities ?? {}).length === 0)
  t.same(d.whois('100.64.1.3').capabilities, {}, 'a policy that takes the grant away takes the capabilities with it')
})
