import t from 'tap'
import { shuffled } from './runner-table-replay.js'
import { existsSync } from 'node:fs'
import { generateWireGuardKeyPair, wireGuardPublicKey } from '@warren/protocol'
import { createFakeWireGuard } from '../src/testing.js'
import { createWireGuard, detectKernelWireGuard, parseWireGuardDump, type WireGuardConfig } from '../src/wireguard/index.js'
import { simulateWireGuardSystem, SIM_CANDIDATES } from './wireguard-simulated-system.js'

const self = generateWireGuardKeyPair().privateKey
const [a, b, c, d] = [0, 1, 2, 3].map(() => generateWireGuardKeyPair().publicKey) as [string, string, string, string]
const IF = 'wgtest0'
const cfg = (peers: WireGuardConfig['peers'], extra: Partial<WireGuardConfig> = {}): WireGuardConfig => ({ interfaceName: IF, privateKey: self, listenPort: 41641, peers, ...extra })
const line = (key: string, endpoint: string, ips: string, ka: string) => [key, '(none)', endpoint, ips, '0', '0', '0', ka].join('\t')
const mutating = (calls: Array<{ argv: string[] }>) => calls.filter(x => /^(wg set|ip link add|ip link del|\S*wireguard-go (?!--version))/.test(x.argv.join(' ')))

/** Each case is a full desired state and the `wg show dump` peer lines it must produce. */
const cases: Array<{ name: string, in: WireGuardConfig, want: string[] }> = [
  { name: 'no peers', in: cfg([]), want: [] },
  {
    name: 'one peer with endpoint and keepalive',
    in: cfg([{ publicKey: a, allowedIps: ['100.64.0.2/32', 'fd7a:115c:a1e0::2/128'], endpoint: '10.9.0.2:41641', persistentKeepalive: 25 }]),
    want: [line(a, '10.9.0.2:41641', '100.64.0.2/32,fd7a:115c:a1e0::2/128', '25')]
  },
  {
    name: 'three peers, one without endpoint',
    in: cfg([
      { publicKey: a, allowedIps: ['100.64.0.2/32'], endpoint: '10.9.0.2:41641', persistentKeepalive: 25 },
      { publicKey: b, allowedIps: ['100.64.0.3/32'], persistentKeepalive: 25 },
      { publicKey: c, allowedIps: ['fd7a:115c:a1e0:0:0:0:0:4/128', '100.64.0.4'], endpoint: '[fd00::4]:41641' }
    ]),
    want: [
      line(a, '10.9.0.2:41641', '100.64.0.2/32', '25'),
      line(b, '(none)', '100.64.0.3/32', '25'),
      line(c, '[fd00::4]:41641', '100.64.0.4/32,fd7a:115c:a1e0::4/128', 'off')
    ].sort()
  },
  {
    name: 'peer with changed addresses and keepalive off',
    in: cfg([{ publicKey: a, allowedIps: ['100.64.0.9/32'], endpoint: '10.9.0.2:41641' }, { publicKey: d, allowedIps: [] }]),
    want: [line(a, '10.9.0.2:41641', '100.64.0.9/32', 'off'), line(d, '(none)', '(none)', 'off')].sort()
  }
]

t.test('set reaches each table state from any previous state, and repeating it changes nothing', async t => {
  const sim = simulateWireGuardSystem()
  const wg = createWireGuard({ runner: sim.runner, wireguardGoCandidates: SIM_CANDIDATES, interfaceName: IF })
  for (let round = 0; round < 6; round++) {
    for (const tc of shuffled(cases, round + 1)) {
      await wg.set(tc.in)
      t.same(sim.dump(IF).slice(1), tc.want, `round ${round}: ${tc.name}`)
      t.equal(sim.dump(IF)[0]!.split('\t')[1], wireGuardPublicKey(self), 'interface key set')
      sim.runner.reset()
      const again = await wg.set(tc.in)
      t.same(again, { interface: false, added: [], updated: [], removed: [] }, `${tc.name}: second set reports no change`)
      t.same(mutating(sim.runner.calls), [], `${tc.name}: second set runs no mutating command`)
    }
  }
})

t.test('adding or removing one peer touches only that peer', async t => {
  const sim = simulateWireGuardSystem()
  const wg = createWireGuard({ runner: sim.runner, wireguardGoCandidates: SIM_CANDIDATES, interfaceName: IF })
  const pa = { publicKey: a, allowedIps: ['100.64.0.2/32'], persistentKeepalive: 25 }
  const pb = { publicKey: b, allowedIps: ['100.64.0.3/32'], endpoint: '10.9.0.3:41641', persistentKeepalive: 25 }
  const pc = { publicKey: c, allowedIps: ['100.64.0.4/32'], persistentKeepalive: 25 }
  await wg.set(cfg([pa, pb]))
  sim.runner.reset()
  t.same(await wg.set(cfg([pa, pb, pc])), { interface: false, added: [c], updated: [], removed: [] })
  t.same(mutating(sim.runner.calls).map(x => x.argv.join(' ')), [`wg set ${IF} peer ${c} allowed-ips 100.64.0.4/32 persistent-keepalive 25`])
  sim.runner.reset()
  t.same(await wg.set(cfg([pa, pc])), { interface: false, added: [], updated: [], removed: [b] })
  t.same(mutating(sim.runner.calls).map(x => x.argv.join(' ')), [`wg set ${IF} peer ${b} remove`])
  sim.runner.reset()
  await wg.set(cfg([pa, { ...pc, allowedIps: ['100.64.0.5/32'] }]))
  t.same(mutating(sim.runner.calls).map(x => x.argv.join(' ')), [`wg set ${IF} peer ${c} allowed-ips 100.64.0.5/32`])
})

t.test('the private key goes through a private file that is gone afterwards, never argv', async t => {
  const sim = simulateWireGuardSystem()
  const wg = createWireGuard({ runner: sim.runner, wireguardGoCandidates: SIM_CANDIDATES, interfaceName: IF })
  await wg.set(cfg([]))
  t.notOk(sim.runner.calls.some(x => x.argv.join(' ').includes(self)), 'no argv carries the key')
  const keyCmd = sim.runner.calls.find(x => x.argv.includes('private-key'))!
  t.same(keyCmd.argv.slice(0, 6), ['wg', 'set', IF, 'listen-port', '41641', 'private-key'])
  t.notOk(existsSync(keyCmd.argv[6]!), 'the key file is deleted after use')
  const st = await wg.status()
  t.notMatch(JSON.stringify(st), self, 'status carries no private key')
  t.equal(st.publicKey, wireGuardPublicKey(self))
})

t.test('a peer that roamed keeps its learned endpoint until the map changes it', async t => {
  const sim = simulateWireGuardSystem()
  const wg = createWireGuard({ runner: sim.runner, wireguardGoCandidates: SIM_CANDIDATES, interfaceName: IF })
  const want = cfg([{ publicKey: a, allowedIps: ['100.64.0.2/32'], endpoint: '10.9.0.2:41641' }])
  await wg.set(want)
  sim.devices.get(IF)!.peers.get(a)!.endpoint = '10.9.0.77:5555'
  sim.runner.reset()
  await wg.set(want)
  t.same(mutating(sim.runner.calls), [], 'unchanged map leaves the roamed endpoint alone')
  await wg.set(cfg([{ publicKey: a, allowedIps: ['100.64.0.2/32'], endpoint: '10.9.0.3:41641' }]))
  t.equal(sim.devices.get(IF)!.peers.get(a)!.endpoint, '10.9.0.3:41641', 'a new endpoint from the map is applied')
})

t.test('auto mode uses the kernel when it can, else wireguard-go; kernel mode says why it cannot', async t => {
  const kernel = simulateWireGuardSystem({ kernel: true })
  t.equal(await createWireGuard({ runner: kernel.runner, wireguardGoCandidates: SIM_CANDIDATES, interfaceName: IF }).up(), 'kernel')
  t.equal(await detectKernelWireGuard(kernel.runner), true)
  const user = simulateWireGuardSystem()
  t.equal(await createWireGuard({ runner: user.runner, wireguardGoCandidates: SIM_CANDIDATES, interfaceName: IF }).up(), 'userspace')
  t.equal(await detectKernelWireGuard(user.runner), false)
  t.ok(user.runner.calls.some(x => x.argv.join(' ') === `/usr/bin/wireguard-go ${IF}`))
  const err = await createWireGuard({ runner: simulateWireGuardSystem().runner, wireguardGoCandidates: SIM_CANDIDATES, interfaceName: IF, mode: 'kernel' }).up().catch(e => e)
  t.equal(err.code, 'wireguard_unavailable')
  t.match(err.message, /kernel WireGuard is not available: `ip link add wgtest0 type wireguard` failed \(exit 2\): Error: Unknown device type.*modprobe wireguard/)
  const noGo = await createWireGuard({ runner: simulateWireGuardSystem({ wireguardGo: false }).runner, wireguardGoCandidates: SIM_CANDIDATES, interfaceName: IF }).up().catch(e => e)
  t.match(noGo.message, /install the wireguard-go package/)
  t.equal(noGo.code, 'wireguard_unavailable')
})

t.test('an interface left by an earlier daemon is adopted with its peers', async t => {
  const sim = simulateWireGuardSystem()
  const want = cfg([{ publicKey: a, allowedIps: ['100.64.0.2/32'] }])
  await createWireGuard({ runner: sim.runner, wireguardGoCandidates: SIM_CANDIDATES, interfaceName: IF }).set(want)
  sim.runner.reset()
  const restarted = createWireGuard({ runner: sim.runner, wireguardGoCandidates: SIM_CANDIDATES, interfaceName: IF })
  t.same(await restarted.set(want), { interface: false, added: [], updated: [], removed: [] })
  t.same(mutating(sim.runner.calls), [], 'no new wireguard-go, no peer churn')
})

t.test('an interface deleted behind the adapter\'s back is recreated with all its peers', async t => {
  const sim = simulateWireGuardSystem()
  const wg = createWireGuard({ runner: sim.runner, wireguardGoCandidates: SIM_CANDIDATES, interfaceName: IF })
  const want = cfg([{ publicKey: a, allowedIps: ['100.64.0.2/32'] }, { publicKey: b, allowedIps: ['100.64.0.3/32'] }])
  await wg.set(want)
  sim.devices.delete(IF)
  t.same(await wg.set(want), { interface: true, added: [a, b], updated: [], removed: [] })
  t.equal(sim.dump(IF).length, 3, 'both peers are back')
})

t.test('a name taken by another kind of interface gives a clear error', async t => {
  const sim = simulateWireGuardSystem()
  sim.devices.set('eth0', { kind: 'veth', listenPort: 0, peers: new Map() })
  sim.runner.on('wg show eth0 dump', { exitCode: 1, stderr: 'Unable to access interface: Protocol not supported' })
  const err = await createWireGuard({ runner: sim.runner, wireguardGoCandidates: SIM_CANDIDATES, interfaceName: 'eth0' }).up().catch(e => e)
  t.match(err.message, /interface eth0 already exists and is not WireGuard \(it is veth\)/)
})

t.test('a name whose wireguard-go socket belongs to another namespace is refused, not adopted', async t => {
  const sim = simulateWireGuardSystem()
  sim.runner.on(`wg show ${IF} dump`, { stdout: 'PRIV\tPUB\t1\toff\n' })
  const err = await createWireGuard({ runner: sim.runner, wireguardGoCandidates: SIM_CANDIDATES, interfaceName: IF }).up().catch(e => e)
  t.equal(err.code, 'interface_busy')
  t.match(err.message, /run by wireguard-go in another network namespace/)
})

t.test('bad config is refused with the field named, and nothing runs', async t => {
  const sim = simulateWireGuardSystem()
  const wg = createWireGuard({ runner: sim.runner, wireguardGoCandidates: SIM_CANDIDATES, interfaceName: IF })
  const bad: Array<[Partial<WireGuardConfig>, RegExp]> = [
    [{ privateKey: 'short' }, /private key is not a 32-byte key/],
    [{ listenPort: 70000 }, /listen port 70000/],
    [{ peers: [{ publicKey: 'nope', allowedIps: [] }] }, /peers\[0\] public key 'nope'/],
    [{ peers: [{ publicKey: a, allowedIps: ['100.64.0.300/32'] }] }, /peers\[0\]\.allowedIps\[0\] '100\.64\.0\.300\/32' is not an IP prefix/],
    [{ peers: [{ publicKey: a, allowedIps: [], endpoint: 'host' }] }, /endpoint 'host' is not host:port/],
    [{ peers: [{ publicKey: a, allowedIps: [] }, { publicKey: a, allowedIps: [] }] }, /peers\[1\] repeats public key/],
    [{ interfaceName: 'much-too-long-name0' }, /interface name 'much-too-long-name0' is not valid/],
    [{ interfaceName: 'other0' }, /is for interface 'other0' but this adapter manages 'wgtest0'/]
  ]
  for (const [patch, msg] of bad) {
    const err = await wg.set(cfg([], patch)).catch(e => e)
    t.equal(err.code, 'bad_config')
    t.match(err.message, msg)
  }
  t.same(sim.runner.calls, [], 'no command ran')
})

t.test('close deletes the link and waits until wg no longer sees it', async t => {
  const sim = simulateWireGuardSystem()
  const wg = createWireGuard({ runner: sim.runner, wireguardGoCandidates: SIM_CANDIDATES, interfaceName: IF })
  await wg.set(cfg([]))
  await wg.close()
  t.notOk(sim.devices.has(IF))
  await t.rejects(wg.status(), /does not exist: run 'warren up' first/)
  await wg.close()
  t.pass('closing twice is fine')
})

t.test('parseWireGuardDump reads handshakes and byte counts', async t => {
  const dump = ['PRIV\tPUB\t51820\toff', [a, '(none)', '10.0.0.2:51820', '100.64.0.2/32,fd7a::2/128', '1700000000', '1024', '2048', '25'].join('\t'), [b, '(none)', '(none)', '(none)', '0', '0', '0', 'off'].join('\t')].join('\n')
  const d = parseWireGuardDump('wg0', dump)
  t.equal(d.listenPort, 51820)
  t.same(d.peers[0], { publicKey: a, endpoint: '10.0.0.2:51820', allowedIps: ['100.64.0.2/32', 'fd7a::2/128'], latestHandshake: new Date(1700000000000), rxBytes: 1024, txBytes: 2048, persistentKeepalive: 25 })
  t.same(d.peers[1], { publicKey: b, endpoint: undefined, allowedIps: [], latestHandshake: undefined, rxBytes: 0, txBytes: 0, persistentKeepalive: 0 })
})

t.test('the fake WireGuard plans like the real one', async t => {
  const fake = createFakeWireGuard({ interfaceName: IF })
  for (const tc of shuffled(cases, 7)) {
    await fake.set(tc.in)
    const peers = fake.device()!.peers.map(p => line(p.publicKey, p.endpoint ?? '(none)', p.allowedIps.length === 0 ? '(none)' : p.allowedIps.join(','), p.persistentKeepalive === 0 ? 'off' : String(p.persistentKeepalive))).sort()
    t.same(peers, tc.want, tc.name)
    t.same(await fake.set(tc.in), { interface: false, added: [], updated: [], removed: [] })
  }
  await fake.close()
  t.equal(fake.isUp, false)
})
