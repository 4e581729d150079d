import t from 'tap'
import { promises as fs, mkdtempSync, statSync, readdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { wireGuardPublicKey, generateWireGuardKeyPair, type LocalUpRequest, type RelayInfo } from '@warren/protocol'
import { startDaemon, type Daemon, type DaemonInit } from '../src/daemon/daemon.js'
import { createFakeDataPlane, createFakeTlsRelayClient, type FakeDataPlane } from '../src/testing.js'
import { createDisco } from '../src/nat/disco.js'
import type { RelayIdentity } from '../src/nat/path-manager.js'
import type { UdpRelayClient } from '../src/nat/types.js'
import { createFakeWire, type FakeWire } from './nat-fake-port.js'
import { startFakeController, fakePeer, until, type FakeController } from './daemon-fake-controller.js'

const GOOD_KEY = `wrnauth-0123456789ab-${'c'.repeat(32)}`
const EXPIRED_KEY = `wrnauth-aaaaaaaaaaaa-${'c'.repeat(32)}`
const PENDING_KEY = `wrnauth-bbbbbbbbbbbb-${'c'.repeat(32)}`
const CONTROLLER = 'https://controller.test:8443'

interface Rig {
  stateDir: string
  ctl: FakeController
  plane: FakeDataPlane
  logs: string[]
  start: (extra?: Partial<DaemonInit>) => Promise<Daemon>
  up: (d: Daemon, req?: Partial<LocalUpRequest>) => ReturnType<Daemon['up']>
}

async function rig (t: { teardown(fn: () => Promise<void>): void }): Promise<Rig> {
  const dir = mkdtempSync(join(tmpdir(), 'warrend-'))
  const ctl = await startFakeController()
  const plane = createFakeDataPlane()
  const logs: string[] = []
  const daemons: Daemon[] = []
  t.teardown(async () => {
    for (const d of daemons) await d.close().catch(() => {})
    await ctl.close()
    await fs.rm(dir, { recursive: true, force: true })
  })
  const sink = new Writable({ write (c, _e, cb) { logs.push(c.toString()); cb() } })
  return {
    stateDir: join(dir, 'state'), ctl, plane, logs,
    async start (extra = {}) {
      const d = await startDaemon({
        stateDir: join(dir, 'state'), socketPath: join(dir, 'warrend.sock'), interfaceName: 'wgtest0', wireguardMode: 'userspace',
        logger: pino({ level: 'debug' }, sink), dataPlane: () => plane, transport: ctl.transport,
        endpoints: port => [`192.0.2.10:${port}`], backoff: { minMs: 10, maxMs: 50 }, ...extra
      })
      daemons.push(d)
      return d
    },
    up: async (d, req = {}) => await d.up({ controller: CONTROLLER, authKey: GOOD_KEY, hostname: 'laptop', ...req })
  }
}

const mode = (p: string): number => statSync(p).mode & 0o777

t.test('a fresh daemon makes its keys private and waits for a login', async t => {
  const r = await rig(t)
  const d = await r.start()
  t.equal(mode(r.stateDir), 0o700, 'state dir is 0700')
  for (const f of readdirSync(r.stateDir).filter(f => !f.includes('.tmp-'))) t.equal(mode(join(r.stateDir, f)), 0o600, `${f} is 0600`)
  t.ok(readdirSync(r.stateDir).includes('wireguard.key') && readdirSync(r.stateDir).includes('machine.key'))
  const st = await d.status()
  t.equal(st.backendState, 'NeedsLogin')
  t.equal(st.dataPlane, undefined, 'no WireGuard implementation before the interface is up')
  t.throws(() => d.ip(), { code: 'not_running' })
  t.equal(r.plane.applied.length, 0, 'nothing touched on the system before up')
})

t.test('up joins with the auth key, applies the map and shows peers with live counters', async t => {
  const r = await rig(t)
  r.ctl.peers = [fakePeer(2), fakePeer(3)]
  const d = await r.start()
  const first = await r.up(d, { advertiseTags: ['tag:web'] })
  t.ok(['Starting', 'Running'].includes(first.backendState))
  await until('Running', async () => (await d.status()).backendState === 'Running')
  t.equal(r.ctl.registrations[0]!.authKey, GOOD_KEY)
  t.same(r.ctl.registrations[0]!.requestTags, ['tag:web'])
  t.same(r.ctl.hellos[0]!.endpoints, ['192.0.2.10:41641'], 'local endpoints go with the hello')
  t.same(r.plane.applied.at(-1)!.peers.map(p => p.name), ['peer2', 'peer3'])

  r.plane.stats = [{ publicKey: r.ctl.peers[0]!.wgKey, endpoint: '192.0.2.2:41641', allowedIps: [], latestHandshake: new Date('2026-11-24T10:00:00Z'), rxBytes: 1234, txBytes: 99, persistentKeepalive: 0 }]
  const st = await d.status()
  t.equal(st.self?.name, 'laptop')
  t.equal(st.controller?.connected, true)
  t.same(st.dataPlane, { implementation: 'wireguard-go' }, 'status says which WireGuard runs')
  const p2 = st.peers.find(p => p.name === 'peer2')!
  t.same([p2.endpoint, p2.lastHandshake, p2.rxBytes, p2.txBytes], ['192.0.2.2:41641', '2026-11-24T10:00:00.000Z', 1234, 99])
  t.equal(st.peers.find(p => p.name === 'peer3')!.lastHandshake, undefined, 'no handshake yet')
  // peers answers from the map alone (synchronously: no `wg show dump`), for name lookups.
  const mapOnly = st.peers.map(({ id, name, fqdn, user, tags, ipv4, ipv6, wgKey, online }) => ({ id, name, fqdn, ...(user !== undefined ? { user } : {}), tags, ipv4, ipv6, wgKey, online }))
  t.same(d.peers(), { backendState: 'Running', self: st.self, peers: mapOnly }, 'peers is status\'s view without WireGuard\'s counters')
  for (const f of readdirSync(r.stateDir).filter(f => !f.includes('.tmp-'))) t.equal(mode(join(r.stateDir, f)), 0o600, `${f} is 0600`)

  t.same(d.ip(), { name: 'laptop', addresses: ['100.64.0.1', 'fd7a:115c:a1e0:ab12::1'] })
  t.same(d.ip('peer3.warren.internal', 4), { name: 'peer3', addresses: ['100.64.1.3'] })
  t.same(d.ip('peer2', 6).addresses, ['fd7a:115c:a1e0:ab12::1:2'])
  t.throws(() => d.ip('nobody'), { code: 'unknown_peer', status: 404 })
  const who = d.whois('100.64.1.2')
  t.same([who.node.name, who.user, who.tags, who.self], ['peer2', 'alice', ['tag:db'], false])
  t.equal(d.whois('100.64.0.1').self, true)
  t.throws(() => d.whois('not-an-ip'), { code: 'bad_ip' })
  const ping = await d.ping('peer2')
  t.same([ping.peer, ping.address, ping.direct, ping.endpoint], ['peer2', '100.64.1.2', true, '192.0.2.2:41641'])

  const secrets = [GOOD_KEY, (await fs.readFile(join(r.stateDir, 'wireguard.key'), 'utf8')).trim(), (await fs.readFile(join(r.stateDir, 'machine.key'), 'utf8')).trim()]
  const logText = r.logs.join('')
  t.ok(logText.includes('registered with the controller'), 'logs were captured')
  for (const s of secrets) t.notOk(logText.includes(s), 'no key or auth key appears in the logs')
})

t.test('deltas from the controller reach the data plane, and the metrics count them', async t => {
  const r = await rig(t)
  r.ctl.peers = [fakePeer(2), fakePeer(3)]
  const d = await r.start()
  await r.up(d)
  await until('Running', async () => (await d.status()).backendState === 'Running')
  r.ctl.delta({ peersRemoved: ['peer2'], peersChanged: [fakePeer(4)] })
  await until('the delta applied', () => r.plane.applied.at(-1)!.peers.map(p => p.name).sort().join() === 'peer3,peer4')
  const text = await d.metrics.render()
  t.match(text, /warren_node_map_messages_total\{type="delta"\} 1/)
  t.match(text, /warren_node_peers 2/)
  t.match(text, /warren_node_apply_duration_seconds_count\{result="ok"\} [2-9]/)
})

t.test('up sends the advertised routes with the hello, keeps route settings, and refuses a bad route before registering', async t => {
  const r = await rig(t)
  const d = await r.start()
  await r.up(d, { advertiseRoutes: ['192.168.1.0/24', '10.0.0.0/8'], acceptRoutes: true })
  await until('Running', async () => (await d.status()).backendState === 'Running')
  t.same(r.ctl.hellos.at(-1)!.routes, ['10.0.0.0/8', '192.168.1.0/24'], 'the hello carries the routes, canonical and sorted')
  t.same(r.plane.routings.at(-1), { advertiseRoutes: ['10.0.0.0/8', '192.168.1.0/24'], acceptRoutes: true, snatSubnetRoutes: true }, 'the data plane gets the settings')
  t.same((await d.status()).routing?.acceptRoutes, true, 'status shows them')

  const hellos = r.ctl.hellos.length
  await r.up(d, { snatSubnetRoutes: false })
  await until('a new hello', () => r.ctl.hellos.length > hellos)
  t.same(r.ctl.hellos.at(-1)!.routes, ['10.0.0.0/8', '192.168.1.0/24'], 'an up without routes keeps those of the last one')
  t.same((await d.status()).routing, { advertiseRoutes: ['10.0.0.0/8', '192.168.1.0/24'], acceptRoutes: true, snatSubnetRoutes: false })

  const registrations = r.ctl.registrations.length
  await t.rejects(r.up(d, { advertiseRoutes: ['192.168.1.1/24'] }), { code: 'bad_route', message: /did you mean 192\.168\.1\.0\/24/ })
  await t.rejects(r.up(d, { advertiseRoutes: ['fd7a:115c:a1e0:ab12::/64'] }), { code: 'bad_route', message: /the mesh's own IPv6 range/ }, 'the mesh\'s own IPv6 /48 is refused too')
  t.equal(r.ctl.registrations.length, registrations, 'a refused up registers nothing')
  t.same((await d.status()).routing?.advertiseRoutes, ['10.0.0.0/8', '192.168.1.0/24'], 'and keeps the settings')
})

t.test('a refused auth key reports the controller\'s reason and changes nothing', async t => {
  const r = await rig(t)
  const d = await r.start()
  await t.rejects(r.up(d, { authKey: EXPIRED_KEY }), { code: 'auth_key_expired', message: /expired at 2026-01-01/ })
  t.equal((await d.status()).backendState, 'NeedsLogin')
  t.equal(r.plane.applied.length, 0)
  t.notOk(readdirSync(r.stateDir).includes('login.json'))
  await t.rejects(d.up({ controller: CONTROLLER }), { code: 'needs_auth_key', message: /--auth-key/ })
  await t.rejects(r.up(d, { authKey: 'not-a-key' }), { code: 'bad_credential' })
})

t.test('a node waiting for approval says so', async t => {
  const r = await rig(t)
  const d = await r.start()
  const st = await r.up(d, { authKey: PENDING_KEY })
  t.equal(st.backendState, 'NeedsApproval')
  t.match(st.health.join('\n'), /warren admin nodes approve laptop/)
})

t.test('a restarted daemon keeps its identity and restores the last map before the controller answers', async t => {
  const r = await rig(t)
  r.ctl.peers = [fakePeer(2)]
  const d1 = await r.start()
  await r.up(d1)
  await until('Running', async () => (await d1.status()).backendState === 'Running')
  const id1 = (await d1.status()).self!
  await d1.close()
  t.equal(r.plane.installed, true, 'closing the daemon (as a crash would) leaves the interface and firewall in place')
  t.equal(r.plane.downCalls, 0)

  // The controller is gone while the daemon restarts.
  const port = r.ctl.port
  await r.ctl.close()
  const appliedBefore = r.plane.applied.length
  const d2 = await r.start()
  const st = await d2.status()
  t.equal(st.backendState, 'Running', 'running from the saved map')
  t.equal(st.controller?.connected, false)
  await until('the outage reported', async () => (await d2.status()).health.some(h => /not connected to the controller at https:\/\/controller\.test:8443 \(.*ECONNREFUSED.*\); the mesh keeps working/.test(h)))
  t.equal(st.self?.wgKey, id1.wgKey, 'same WireGuard identity')
  t.equal(wireGuardPublicKey((await fs.readFile(join(r.stateDir, 'wireguard.key'), 'utf8')).trim()), id1.wgKey)
  t.same(r.plane.applied.at(-1)!.peers.map(p => p.name), ['peer2'], 'the saved map was reconciled again')
  t.ok(r.plane.applied.length > appliedBefore)

  // The controller comes back on the same port: the daemon resumes its session.
  const back = await startFakeController({ port })
  t.teardown(() => back.close())
  for (const [k, v] of r.ctl.nodes) back.nodes.set(k, v)
  back.peers = [fakePeer(2), fakePeer(5)]
  await until('reconnected', async () => (await d2.status()).controller?.connected === true)
  t.ok(back.hellos[0]!.resume !== undefined, 'the reconnect offers to resume the saved session')
  await until('the new map applied', () => r.plane.applied.at(-1)!.peers.length === 2)
})

t.test('down removes everything and a restarted daemon stays down', async t => {
  const r = await rig(t)
  r.ctl.peers = [fakePeer(2)]
  const d1 = await r.start()
  await r.up(d1)
  await until('Running', async () => (await d1.status()).backendState === 'Running')
  const st = await d1.down()
  t.equal(st.backendState, 'Stopped')
  t.equal(r.plane.installed, false, 'interface, routes, firewall table and resolver removed')
  t.equal(r.plane.downCalls, 1)
  const sessions = r.ctl.sessions()
  await d1.close()
  const applied = r.plane.applied.length
  const d2 = await r.start()
  t.equal((await d2.status()).backendState, 'Stopped')
  t.equal(r.plane.applied.length, applied, 'nothing re-applied after down')
  t.equal(r.ctl.sessions(), sessions, 'no map session opened')
  // Later `up` needs no auth key: the machine key logs in again.
  await d2.up({ controller: CONTROLLER })
  await until('Running again', async () => (await d2.status()).backendState === 'Running')
  t.equal(r.ctl.registrations.at(-1)!.authKey, undefined)
})

t.test('a node deleted by an admin goes to NeedsLogin and keeps its data plane', async t => {
  const r = await rig(t)
  const d = await r.start()
  await r.up(d)
  await until('Running', async () => (await d.status()).backendState === 'Running')
  r.ctl.deleteNode([...r.ctl.nodes.keys()][0]!)
  await until('NeedsLogin', async () => (await d.status()).backendState === 'NeedsLogin')
  const st = await d.status()
  t.match(st.health.join(), /was deleted/)
  t.equal(r.plane.installed, true)
})

t.test('a failed apply is reported in health and retried on the next map', async t => {
  const r = await rig(t)
  r.ctl.peers = [fakePeer(2)]
  const d = await r.start()
  r.plane.failNextApply = new Error('`wg set` failed (exit 1): boom')
  await r.up(d)
  await until('the failure reported', async () => (await d.status()).health.some(h => /boom/.test(h)))
  r.ctl.delta({ peersChanged: [fakePeer(3)] })
  await until('Running', async () => (await d.status()).backendState === 'Running')
  t.same((await d.status()).health, [])
  t.match(await d.metrics.render(), /warren_node_errors_total\{where="apply"\} 1/)
})

t.test('metrics are served on --metrics-listen', async t => {
  const r = await rig(t)
  const d = await r.start({ metricsListen: '127.0.0.1:0' })
  t.ok(d.metricsUrl)
  const text = await (await fetch(d.metricsUrl!)).text()
  t.match(text, /warren_node_controller_connected/)
})

t.test('with a shared port the daemon probes its peers: direct where a peer answers, the UDP relay where none does', async t => {
  const r = await rig(t)
  const wire = createFakeWire()
  const answering = generateWireGuardKeyPair()
  r.ctl.peers = [{ ...fakePeer(2), wgKey: answering.publicKey }, fakePeer(3)]
  const peerDisco = createDisco({ port: wire.port('192.0.2.2', 41641), privateKey: answering.privateKey })
  t.teardown(() => peerDisco.close())
  let ourPort: ReturnType<FakeWire['port']> | undefined
  const relayed = fakeRelay('192.0.2.99:40003')
  const d = await r.start({
    paths: {
      sharedPort: () => (ourPort ??= wire.port('192.0.2.10', r.plane.listenPort())),
      udpRelay: () => relayed,
      timings: { punchDelayMs: 20, burstStepMs: 50 }
    }
  })
  await r.up(d)
  await until('peer keys known', async () => r.plane.applied.length > 0)
  const self = wireGuardPublicKey((await fs.readFile(join(r.stateDir, 'wireguard.key'), 'utf8')).trim())
  peerDisco.setPeers([self])
  const byName = async (name: string) => (await d.status()).peers.find(p => p.name === name)
  await until('direct path to peer2', async () => (await byName('peer2'))?.path?.kind === 'direct')
  t.match((await byName('peer2'))?.path, { kind: 'direct', endpoint: '192.0.2.2:41641', latencyMs: Number })
  t.same((await byName('peer3'))?.path, { kind: 'udp-relay', endpoint: '192.0.2.99:40003', relay: 'relay-1' })
  t.ok(ourPort!.sent.some(s => s.ttl === 2), 'TTL-limited probes went first')
  await until('endpoints handed to WireGuard', async () => r.plane.endpointSets.at(-1)?.get(answering.publicKey) === '192.0.2.2:41641')
  t.equal(r.plane.endpointSets.at(-1)?.get(r.ctl.peers[1]!.wgKey), '192.0.2.99:40003')
  await d.down()
  t.ok(relayed.closed, 'down closes the relay client')
  t.notOk(ourPort!.closed, 'the shared port is the data plane\'s to close')
  t.equal((await d.status()).peers.every(p => p.path === undefined), true)
})

t.test('the TLS relay client is made with the map\'s relays and hears each new map\'s', async t => {
  const r = await rig(t)
  const key = generateWireGuardKeyPair().publicKey
  const edge: RelayInfo = { id: 'edge-1', udp: '192.0.2.7:3480', key, tls: 'https://192.0.2.7:443', tlsFingerprint: 'ab'.repeat(32) }
  r.ctl.nat = { stun: [], relays: [] }
  const wire = createFakeWire()
  let madeWith: readonly RelayInfo[] | undefined
  const followed: Array<readonly RelayInfo[]> = []
  const d = await r.start({
    paths: {
      sharedPort: () => wire.port('192.0.2.10', r.plane.listenPort()),
      tlsRelay: ctx => {
        madeWith = ctx.netmap()?.nat?.relays
        return { ...createFakeTlsRelayClient(), followMap: relays => { followed.push(relays) } }
      }
    }
  })
  await r.up(d)
  await until('the TLS relay client made', async () => madeWith !== undefined)
  t.same(madeWith, [], 'made with the first map\'s relays')
  r.ctl.delta({ nat: { stun: [], relays: [edge] } })
  await until('the new relays heard', async () => followed.some(f => f.length === 1))
  t.same(followed.at(-1), [edge], 'a map that lists a TLS relay reaches the client')
})

function fakeRelay (endpoint: string): UdpRelayClient & RelayIdentity & { closed: boolean } {
  const requested = new Set<string>()
  return {
    closed: false,
    request (k) { requested.add(k) },
    release (k) { requested.delete(k) },
    endpoint: k => requested.has(k) ? endpoint : undefined,
    relayId: () => 'relay-1',
    onChange: () => () => {},
    async close () { this.closed = true }
  }
}
