/**
 * dataplane-bench measures, in one run and between the same two network namespaces, TCP
 * throughput (one iperf3 stream, A -> B) through:
 * - Warren: real daemons joined to a real controller, with the policy filter enforced
 *   (B admits A on tcp/5201 and ICMP only), over the WireGuard the daemon chose;
 * - raw wireguard-go: the same wireguard-go program, configured by hand with `wg`, no filter;
 * - Nebula 1.6.1 (Debian's package; installed with apt-get when missing), certificates from
 *   nebula-cert in a temp dir, firewall open;
 * - the bridged veths underneath (the kernel baseline).
 * Rounds rotate the order of the tunnels so each sees the same load. It also times
 * `warren up` to the first ping reply from A to B (direct path), over several down/up
 * cycles, and checks that Warren leaves the segmentation offloads alone: the mean packet
 * size the kernel hands to the sender's tunnel and the receiver gets from it (large when
 * TSO/GRO work), and `ethtool -k` of Warren's interface against the raw one.
 * Needs root, wg, wireguard-go, nft, iperf3, ping (and apt for nebula).
 *
 * A context row runs Warren with conntrack turned on in both namespaces (what a filter built
 * on conntrack pays; Warren keeps its flow state in its own sets), and `--compare-wireguard-go
 * PATH` adds a raw row for another wireguard-go build (say bookworm's, unpacked from its .deb).
 *
 *   node bench/dist/src/dataplane-bench.js [--rounds 7] [--seconds 4] [--up-rounds 5] [--compare-wireguard-go PATH] [--write]
 */
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateWireGuardKeyPair, describeDataPlane, type DataPlaneInfo } from '@warren/protocol'
import { withSecretFile } from '@warren/node'
import { createTeardownScope, netnsSkipReason, waitFor, type Host } from '@warren/test'
import { median, printTable, writeResults, argValue, loadNow, loadLine } from './report.js'
import { upToPing, type UpTiming } from './up-timing.js'
import { createClientServerMesh } from './client-server-mesh.js'

const rounds = Number(argValue('--rounds', '7'))
const seconds = Number(argValue('--seconds', '4'))
const upRounds = Number(argValue('--up-rounds', '5'))
const compareGo = argValue('--compare-wireguard-go', '')
const command = `node bench/dist/src/dataplane-bench.js --rounds ${rounds} --seconds ${seconds} --up-rounds ${upRounds}` +
  `${compareGo !== '' ? ` --compare-wireguard-go ${compareGo}` : ''}${process.argv.includes('--write') ? ' --write' : ''}`

const POLICY = `{
  "tagOwners": { "tag:client": ["bench@"], "tag:server": ["bench@"] },
  "acls": [
    { "action": "accept", "src": ["tag:client"], "dst": ["tag:server:5201"], "proto": "tcp" },
    { "action": "accept", "src": ["tag:client"], "dst": ["tag:server:*"], "proto": "icmp" }
  ]
}
`
/** Overlay addresses of the hand-made tunnels, outside Warren's 100.64.0.0/10 and the topology's 10.x. */
const RAW = { a: '192.168.201.1', b: '192.168.201.2', port: 51900, tag: 'r' }
const OTHER = { a: '192.168.203.1', b: '192.168.203.2', port: 51901, tag: 'o' }
/** CONNTRACK_TABLE turns conntrack on in a namespace, as any filter built on it does. */
const CONNTRACK_TABLE = 'table inet wbenchct {\n  chain input {\n    type filter hook input priority 0; policy accept;\n    ct state established,related accept\n  }\n}\n'
const NEB = { a: '192.168.202.1', b: '192.168.202.2', port: 4243 }

const scope = createTeardownScope(console.error)
process.on('SIGINT', () => { scope.fail(); void scope.cleanup().then(() => process.exit(130)) })

/** ensureNebula installs Debian's nebula package when the nebula programs are missing. */
function ensureNebula (): void {
  const has = (cmd: string): boolean => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0
  if (has('nebula') && has('nebula-cert')) return
  console.error('installing nebula (apt-get install nebula)')
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  const install = (): number | null => spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'nebula'], { env, stdio: ['ignore', 'ignore', 'inherit'] }).status
  if (install() !== 0) {
    spawnSync('apt-get', ['update', '-qq'], { env, stdio: 'inherit' })
    if (install() !== 0) throw new Error('could not install nebula with apt-get; install Debian\'s nebula package and run again')
  }
}

function version (argv: string[]): string {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8' })
  return `${r.stdout}${r.stderr}`.split('\n')[0]!.trim()
}

/** iperf runs one TCP stream from `from` to ip:5201 for `seconds` and returns Mbit/s at the receiver. */
async function iperf (from: Host, ip: string): Promise<number> {
  const r = await from.exec(['iperf3', '-c', ip, '-t', String(seconds), '-O', '1', '-J'], { allowFail: true, timeoutMs: (seconds + 30) * 1000 })
  if (r.exitCode !== 0) throw new Error(`iperf3 to ${ip} failed: ${r.stderr || r.stdout.slice(0, 400)}`)
  return (JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second / 1e6
}

/** counters reads an interface's byte and packet counters in one direction. */
async function counters (host: Host, iface: string, dir: 'tx' | 'rx'): Promise<[number, number]> {
  const r = await host.exec(['cat', `/sys/class/net/${iface}/statistics/${dir}_bytes`, `/sys/class/net/${iface}/statistics/${dir}_packets`])
  const [bytes, packets] = r.stdout.trim().split('\n').map(Number)
  return [bytes!, packets!]
}

/**
 * Tunnel is one way from A to B through a tunnel; `ifaces` are its interfaces in A and in B;
 * `around` runs each measurement (to change the namespaces for it and back).
 */
interface Tunnel {
  name: string
  target: string
  ifaces?: { a: string, b: string }
  around?: (measure: () => Promise<void>) => Promise<void>
  mbps: number[]
  txAvg: number[]
  rxAvg: number[]
}

/** measure runs one iperf3 stream through a tunnel and records the mean packet sizes on its interfaces. */
async function measure (tun: Tunnel, a: Host, b: Host): Promise<void> {
  if (tun.around !== undefined) await tun.around(async () => { await measureOnce(tun, a, b) })
  else await measureOnce(tun, a, b)
}

async function measureOnce (tun: Tunnel, a: Host, b: Host): Promise<void> {
  const before = tun.ifaces === undefined ? undefined : [await counters(a, tun.ifaces.a, 'tx'), await counters(b, tun.ifaces.b, 'rx')]
  tun.mbps.push(await iperf(a, tun.target))
  if (tun.ifaces === undefined || before === undefined) return
  const after = [await counters(a, tun.ifaces.a, 'tx'), await counters(b, tun.ifaces.b, 'rx')]
  const avg = (i: number): number => (after[i]![0] - before[i]![0]) / Math.max(1, after[i]![1] - before[i]![1])
  tun.txAvg.push(avg(0))
  tun.rxAvg.push(avg(1))
}

/** rawWireGuard brings up a wireguard-go pair by hand, with `wg`, and no filter. */
async function rawWireGuard (program: string, a: Host, b: Host, RAW: typeof OTHER): Promise<{ a: string, b: string }> {
  const ifaces = { a: a.interfaceName(RAW.tag), b: b.interfaceName(RAW.tag) }
  const keys = { a: generateWireGuardKeyPair(), b: generateWireGuardKeyPair() }
  const ends = [
    { host: a, me: 'a', peer: 'b', peerHost: b },
    { host: b, me: 'b', peer: 'a', peerHost: a }
  ] as const
  for (const e of ends) {
    const ifn = ifaces[e.me]
    await e.host.exec([program, ifn], { env: { WG_PROCESS_FOREGROUND: undefined, LOG_LEVEL: undefined } })
    await withSecretFile(keys[e.me].privateKey + '\n', async path => {
      await e.host.exec(['wg', 'set', ifn, 'private-key', path, 'listen-port', String(RAW.port),
        'peer', keys[e.peer].publicKey, 'allowed-ips', `${RAW[e.peer]}/32`, 'endpoint', `${e.peerHost.address}:${RAW.port}`])
    })
    await e.host.exec(['ip', 'addr', 'add', `${RAW[e.me]}/32`, 'peer', `${RAW[e.peer]}/32`, 'dev', ifn])
    await e.host.exec(['ip', 'link', 'set', ifn, 'up'])
  }
  return ifaces
}

/** nebula starts Nebula on both hosts with certificates from a fresh CA and an open firewall. */
async function nebula (a: Host, b: Host): Promise<{ a: string, b: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'warren-bench-nebula-'))
  scope.t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const cert = (args: string[]): void => {
    const r = spawnSync('nebula-cert', args, { cwd: dir, encoding: 'utf8' })
    if (r.status !== 0) throw new Error(`nebula-cert ${args.join(' ')} failed: ${r.stderr}`)
  }
  cert(['ca', '-name', 'warren-bench', '-out-crt', 'ca.crt', '-out-key', 'ca.key'])
  const ifaces = { a: a.interfaceName('n'), b: b.interfaceName('n') }
  for (const [me, peer, host, peerHost] of [['a', 'b', a, b], ['b', 'a', b, a]] as const) {
    cert(['sign', '-name', me, '-ip', `${NEB[me]}/24`, '-ca-crt', 'ca.crt', '-ca-key', 'ca.key', '-out-crt', `${me}.crt`, '-out-key', `${me}.key`])
    const any = [{ port: 'any', proto: 'any', host: 'any' }]
    const config = {
      pki: { ca: join(dir, 'ca.crt'), cert: join(dir, `${me}.crt`), key: join(dir, `${me}.key`) },
      static_host_map: { [NEB[peer]]: [`${peerHost.address}:${NEB.port}`] },
      lighthouse: { am_lighthouse: false, hosts: [] },
      listen: { host: '0.0.0.0', port: NEB.port },
      punchy: { punch: false },
      tun: { disabled: false, dev: ifaces[me] },
      logging: { level: 'warning' },
      firewall: { outbound: any, inbound: any }
    }
    writeFileSync(join(dir, `${me}.yml`), JSON.stringify(config, null, 2))
    const proc = host.spawn(['nebula', '-config', join(dir, `${me}.yml`)])
    scope.t.teardown(async () => { await proc.kill() })
  }
  return ifaces
}

/** pingable waits until one echo from `from` to ip is answered. */
async function pingable (from: Host, ip: string, what: string): Promise<void> {
  await waitFor(async () => (await from.exec(['ping', '-n', '-c', '1', '-W', '1', ip], { allowFail: true })).exitCode === 0, { timeoutMs: 60_000, message: what })
}

async function run (): Promise<void> {
  const skip = netnsSkipReason()
  if (skip !== false) throw new Error(`dataplane-bench needs root and network namespaces: ${skip}`)
  ensureNebula()
  const load0 = loadNow()

  const { mesh, a: na, b: nb, clientKey } = await createClientServerMesh(scope.t, POLICY, 'dataplane bench')
  const [a, b] = [na.host, nb.host]
  await pingable(a, nb.ipv4, 'A pinging B over Warren')
  const dp: DataPlaneInfo | undefined = (await na.status()).dataPlane
  if (dp === undefined) throw new Error('the daemon\'s status names no data plane')
  const program = dp.path ?? 'wireguard-go'

  // 5201 for the streams; 5202 listens too, but the policy does not admit A to it.
  for (const port of ['5201', '5202']) {
    const server = b.spawn(['iperf3', '-s', '-p', port, '--forceflush'])
    scope.t.teardown(async () => { await server.kill() })
    await server.waitForLine(/Server listening/, 30_000)
  }
  const deniedPort = await a.exec(['iperf3', '-c', nb.ipv4, '-p', '5202', '-t', '1', '--connect-timeout', '1000'], { allowFail: true })
  const deniedOnRaw = await a.exec(['iperf3', '-c', b.address, '-p', '5202', '-t', '1', '--connect-timeout', '1000'], { allowFail: true })

  console.error('timing warren up -> first ping reply')
  const ups: UpTiming[] = []
  for (let i = 0; i < upRounds; i++) ups.push(await upToPing(mesh, na, nb.ipv4, clientKey))

  const rawIfaces = await rawWireGuard(program, a, b, RAW)
  const otherIfaces = compareGo !== '' ? await rawWireGuard(compareGo, a, b, OTHER) : undefined
  const nebIfaces = await nebula(a, b)
  await pingable(a, RAW.b, 'A pinging B over raw wireguard-go')
  if (otherIfaces !== undefined) await pingable(a, OTHER.b, `A pinging B over ${compareGo}`)
  await pingable(a, NEB.b, 'A pinging B over Nebula')

  const hasEthtool = (await a.exec(['ethtool', '--version'], { allowFail: true })).exitCode === 0
  const features = async (iface: string): Promise<string> =>
    (await a.exec(['ethtool', '-k', iface], { allowFail: true })).stdout.split('\n').slice(1).filter(l => !l.includes('[fixed]')).join('\n')
  const warrenFeatures = await features(na.iface)
  const rawFeatures = await features(rawIfaces.a)

  const warren: Tunnel = { name: `Warren direct (${dp.implementation}, policy enforced)`, target: nb.ipv4, ifaces: { a: na.iface, b: nb.iface }, mbps: [], txAvg: [], rxAvg: [] }
  const raw: Tunnel = { name: 'raw wireguard-go, same program, by hand', target: RAW.b, ifaces: rawIfaces, mbps: [], txAvg: [], rxAvg: [] }
  const neb: Tunnel = { name: `Nebula (${version(['nebula', '-version']).replace(/^Version: /, '')})`, target: NEB.b, ifaces: nebIfaces, mbps: [], txAvg: [], rxAvg: [] }
  const veth: Tunnel = { name: 'veth + bridge underneath (kernel)', target: b.address, mbps: [], txAvg: [], rxAvg: [] }
  const conntrack: Tunnel = {
    ...warren,
    name: 'Warren + conntrack on in both namespaces (context)',
    mbps: [],
    txAvg: [],
    rxAvg: [],
    around: async m => {
      for (const h of [a, b]) await h.exec(['nft', '-f', '-'], { input: CONNTRACK_TABLE })
      try { await m() } finally { for (const h of [a, b]) await h.exec(['nft', 'delete', 'table', 'inet', 'wbenchct']) }
    }
  }
  const other: Tunnel | undefined = otherIfaces === undefined
    ? undefined
    : { name: `raw wireguard-go ${version([compareGo, '--version']).replace(/^wireguard-go /, '')} (${compareGo})`, target: OTHER.b, ifaces: otherIfaces, mbps: [], txAvg: [], rxAvg: [] }
  const tunnels = [warren, raw, neb, conntrack, ...(other !== undefined ? [other] : [])]
  for (const tun of tunnels) await iperf(a, tun.target) // warm-up
  for (let r = 0; r < rounds; r++) {
    console.error(`round ${r + 1}/${rounds}`)
    // Warren and the raw build run back to back (their per-round ratio compares neighbours),
    // alternating which goes first; the other rows follow, in alternating order too.
    const pair = r % 2 === 0 ? [warren, raw] : [raw, warren]
    const rest = tunnels.filter(x => x !== warren && x !== raw)
    for (const tun of [...pair, ...(r % 2 === 0 ? rest : rest.reverse())]) await measure(tun, a, b)
    if (r === 0 || r === rounds - 1 || r === rounds >> 1) await measure(veth, a, b)
  }
  const load1 = loadNow()

  const perRound = (x: Tunnel, y: Tunnel): number => median(x.mbps.map((v, i) => v / y.mbps[i]!))
  const ratioRaw = median(warren.mbps) / median(raw.mbps)
  const ratioNeb = median(warren.mbps) / median(neb.mbps)
  const fmt = (x: number): string => Number.isFinite(x) ? x.toFixed(0) : '-'
  const row = (t: Tunnel): string[] => [t.name, fmt(median(t.mbps)), t.mbps.map(fmt).join(' '),
    (median(t.mbps) / median(warren.mbps)).toFixed(2), fmt(median(t.txAvg)), fmt(median(t.rxAvg))]
  const table = printTable(['path (A -> B, one TCP stream)', 'median Mbit/s', 'runs', 'of Warren', 'tunnel tx bytes/packet at A', 'rx bytes/packet at B'],
    [row(warren), row(raw), row(neb), row(conntrack), ...(other !== undefined ? [row(other)] : []), row(veth)])
  const upTable = printTable(['from `warren up` (A, after `warren down`)', 'median ms', 'runs'], [
    ['to the first ping reply from B (direct)', fmt(median(ups.map(u => u.toPing))), ups.map(u => fmt(u.toPing)).join(' ')],
    ['until `warren up` returned (state Running)', fmt(median(ups.map(u => u.upCmd))), ups.map(u => fmt(u.upCmd)).join(' ')]
  ])
  const sameFeatures = warrenFeatures === rawFeatures
  const summary = [
    `Warren / raw wireguard-go: **${ratioRaw.toFixed(3)}** of medians, ${perRound(warren, raw).toFixed(3)} median of per-round ratios (goal >= 0.95): ${ratioRaw >= 0.95 ? 'met' : 'NOT met'}.`,
    `Warren / Nebula: **${ratioNeb.toFixed(2)}** of medians, ${perRound(warren, neb).toFixed(2)} median of per-round ratios (goal >= 2): ${ratioNeb >= 2 ? 'met' : 'NOT met'}.`,
    `WireGuard in both Warren rows and the raw row: ${describeDataPlane(dp)}. wg: ${version(['wg', '--version'])}.`,
    `Through Warren, a listening port the policy does not allow (5202) was ${deniedPort.exitCode !== 0 ? 'refused' : 'NOT refused'}` +
    ` (outside the mesh it ${deniedOnRaw.exitCode === 0 ? 'answered' : 'did NOT answer'}).`,
    `Offloads: ${!hasEthtool ? '(ethtool is not installed: features not compared)' : `\`ethtool -k\` of Warren's interface and of the raw one ${sameFeatures ? 'list the same features' : 'DIFFER'}`}; the bytes/packet columns are ` +
    'what the kernel handed to the sender\'s tunnel interface and what the receiver\'s got from it (far above the 1420-byte MTU when TSO and GRO work).',
    loadLine(load0, load1)
  ].join('\n')
  console.log(table)
  console.log(upTable)
  console.log(summary)
  if (hasEthtool && !sameFeatures) console.log(`Warren's interface:\n${warrenFeatures}\nraw:\n${rawFeatures}`)
  if (process.argv.includes('--write')) {
    writeResults('Data plane throughput', `Command: \`${command}\` (root; \`npx tsc -b\` first)\n\n` +
      `One run, ${rounds} rounds of ${seconds} s per path, iperf3 A -> B, one TCP stream, all between the same two network namespaces ` +
      '(bridged veths, as in the tests). Warren: a real controller and two daemons, B admitting A on tcp/5201 and ICMP only. ' +
      'Raw wireguard-go: the same program, configured by hand with `wg`, no filter. Nebula: Debian\'s package, certificates from nebula-cert, firewall open, default MTU. ' +
      'Each round runs Warren and the raw build back to back (alternating which goes first), then the others. Warren keeps the state of the flows a node opens in its own dynamic sets, not in conntrack; ' +
      'the conntrack row shows what turning conntrack on would cost (the kernel then tracks every packet of the namespace, the WireGuard underlay\'s included).\n\n' + table + '\n' + summary + '\n\n' +
      `Time from \`warren up\` to the first ping reply over the direct path (B already up; A taken down and up ${upRounds} times; ` +
      'a shell loop in A\'s namespace pings B every 5 ms until one echo is answered):\n\n' + upTable)
  }
  if (deniedPort.exitCode === 0) process.exitCode = 1
}

run().catch(e => { scope.fail(); console.error(e instanceof Error ? e.message : e); process.exitCode = 1 }).finally(scope.cleanup)
