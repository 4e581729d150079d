/**
 * tls-relay-bench measures TCP throughput between two wireguard-go namespaces through
 * the TLS relay against the direct path between the same namespaces, in one run (rounds
 * alternate which goes first). Three namespaces: A and B (WireGuard, iperf3, a TLS relay
 * client each) and R (the relay: the controller's relay code on an HTTPS server of its
 * own, over an in-memory node source). A-B share a veth (the direct path); A-R and B-R
 * are separate veths, so relayed packets really cross R. Needs root, wireguard-go, wg,
 * iperf3.
 *
 *   node bench/dist/src/tls-relay-bench.js [--rounds 3] [--seconds 5] [--carrier stream|websocket] [--high-water BYTES] [--no-offload] [--variant SETTINGS]... [--profile DIR] [--write]
 *
 * The same file runs the relay (`relay ...`) and the clients (`client ...`) inside the
 * namespaces.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { createServer } from 'node:https'
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { PerformanceObserver, constants } from 'node:perf_hooks'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { generateMachineKeyPair, generateWireGuardKeyPair, type Node, type MachineKeyPair } from '@warren/protocol'
import { createTlsRelay, loadOrCreateTls, map } from '@warren/controller'
import { createFakeNodeSource, createFakeMapPolicy } from '@warren/controller/testing'
import { createTlsRelayClient, withSecretFile, type TlsRelayCarrier } from '@warren/node'
import { createControllerTransport } from '@warren/sdk/transport'
import { median, printTable, writeResults, argValue, loadNow, loadLine } from './report.js'

const SELF = fileURLToPath(import.meta.url)

interface BenchNode { node: Node, machine: MachineKeyPair }

/**
 * watchGc counts this process's garbage collections by kind (minor = scavenge, major =
 * mark-compact) and their total pause, for the stats lines: the relay's copies are
 * allocation-bound, so these show where a change moved the cost.
 */
function watchGc (): () => Record<string, number> {
  const kinds: Record<number, string> = { [constants.NODE_PERFORMANCE_GC_MINOR]: 'minor', [constants.NODE_PERFORMANCE_GC_MAJOR]: 'major', [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental', [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb' }
  const seen: Record<string, number> = { pauseMs: 0 }
  new PerformanceObserver(list => {
    for (const e of list.getEntries()) {
      const kind = kinds[((e as { detail?: { kind?: number } }).detail)?.kind ?? -1] ?? 'other'
      seen[kind] = (seen[kind] ?? 0) + 1
      seen.pauseMs! += e.duration
    }
  }).observe({ entryTypes: ['gc'] })
  return () => ({ ...seen, pauseMs: Math.round(seen.pauseMs!) })
}

/** role relay: serve the TLS relay on --listen for the nodes in --nodes (JSON), print the fingerprint. */
async function runRelay (): Promise<void> {
  const nodes = JSON.parse(readFileSync(argValue('--nodes', ''), 'utf8')) as Node[]
  const dir = mkdtempSync(join(tmpdir(), 'warren-relay-bench-'))
  const tls = await loadOrCreateTls({ stateDir: dir, host: 'relay' })
  const source = createFakeNodeSource(nodes)
  const mesh = map.createMeshPolicy({ source, engine: createFakeMapPolicy(), listener: { nodeChanged () {}, nodeRemoved () {}, policyChanged () {} } })
  const relay = createTlsRelay({ nodeByMachineKey: k => source.nodeByMachineKey(k), getNode: id => source.getNode(id), peers: mesh, events: source.events }, { rateBytesPerSecond: 1e10, highWaterBytes: Number(argValue('--high-water', String(2 * 1024 * 1024))) })
  const server = createServer({ key: tls.key, cert: tls.cert })
  relay.attach(server)
  const [host, port] = argValue('--listen', '0.0.0.0:8443').split(':')
  server.listen(Number(port), host, () => process.stdout.write(`listening ${tls.fingerprint}\n`))
  const gc = watchGc()
  setInterval(() => process.stdout.write(`stats ${JSON.stringify({ ...relay.stats(), gc: gc() })}\n`), 2000).unref()
  process.once('SIGTERM', () => { rmSync(dir, { recursive: true, force: true }); process.exit(0) })
}

/** role client: a TLS relay client with the machine key in --key-file, printing the peer's loopback endpoint. */
async function runClient (): Promise<void> {
  const secretKey = readFileSync(argValue('--key-file', ''), 'utf8').trim()
  const machineKey: MachineKeyPair = { secretKey, publicKey: Buffer.from(Buffer.from(secretKey, 'base64').subarray(32)).toString('base64') }
  const client = createTlsRelayClient({
    transport: createControllerTransport({ url: argValue('--url', ''), fingerprint: argValue('--fingerprint', '') }),
    machineKey,
    wgPort: Number(argValue('--wg-port', '51820')),
    carrier: argValue('--carrier', 'stream') as TlsRelayCarrier,
    offload: !process.argv.includes('--no-offload'),
    onState: up => { if (up) process.stdout.write('up\n') }
  })
  process.stdout.write(`endpoint ${await client.endpoint(argValue('--peer', ''))}\n`)
  const gc = watchGc()
  setInterval(() => process.stdout.write(`stats ${JSON.stringify({ ...client.stats(), gc: gc() })}\n`), 2000).unref()
  process.once('SIGTERM', () => { void client.close().then(() => process.exit(0)) })
}

/** waitLine resolves with the first stdout line of `p` that matches. */
async function waitLine (p: ChildProcess, re: RegExp, what: string): Promise<RegExpMatchArray> {
  let text = ''
  return await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: no line matching ${re} within 30 s; it printed: ${text.slice(-800)}`)), 30_000)
    const onData = (d: Buffer): void => {
      text += d.toString()
      const m = text.match(re)
      if (m !== null) { clearTimeout(timer); p.stdout!.off('data', onData); resolve(m) }
    }
    p.stdout!.on('data', onData)
    p.stderr!.on('data', (d: Buffer) => { text += d.toString() })
    p.once('exit', code => { clearTimeout(timer); reject(new Error(`${what} exited (${code ?? 'signal'}): ${text.slice(-800)}`)) })
  })
}

async function orchestrate (): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.error('tls-relay-bench needs root (network namespaces, wireguard-go)')
    process.exit(1)
  }
  const rounds = Number(argValue('--rounds', '3'))
  const seconds = Number(argValue('--seconds', '5'))
  const carrier = argValue('--carrier', 'stream')
  // --no-offload: the clients' loopback sockets move one datagram per packet (no UDP_SEGMENT / UDP_GRO), as before offload
  const offload = !process.argv.includes('--no-offload')
  // --variant "SETTINGS" (repeatable): one more relayed path, with a relay and clients of its own
  // started with these node flags (--x) and environment variables (NAME=value)
  const variants = process.argv.flatMap((a, i) => a === '--variant' && process.argv[i + 1] !== undefined ? [process.argv[i + 1]!] : [])
  const loadAtStart = loadNow()
  const tag = randomBytes(3).toString('hex')
  const ns = { a: `wtA${tag}`, b: `wtB${tag}`, r: `wtR${tag}` }
  const ifn = { a: `wtA${tag}`, b: `wtB${tag}` }
  const o = 1 + (parseInt(tag.slice(0, 2), 16) % 200)
  const addr = { ab: [`10.252.${o}.1`, `10.252.${o}.2`], ar: [`10.253.${o}.1`, `10.253.${o}.2`], br: [`10.254.${o}.1`, `10.254.${o}.2`] }
  const dir = mkdtempSync(join(tmpdir(), 'warren-tls-bench-'))
  // --profile DIR: the relay and the clients write V8 CPU profiles there when the run ends.
  const profileDir = argValue('--profile', '')
  const nodeArgv = [process.execPath, ...(profileDir === '' ? [] : ['--cpu-prof', '--cpu-prof-dir', profileDir]), SELF]
  const children: ChildProcess[] = []
  /** lastStats keeps each child's latest `stats` line (drops show there) */
  const lastStats = new Map<string, string>()
  const keepStats = (name: string, c: ChildProcess): void => {
    c.stdout!.on('data', (d: Buffer) => { const m = [...d.toString().matchAll(/^stats (.*)$/gm)].at(-1); if (m !== undefined) lastStats.set(name, m[1]!) })
  }
  const sh = (argv: string[], input?: string): string => {
    const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', ...(input === undefined ? {} : { input }) })
    if (r.status !== 0) throw new Error(`${argv.join(' ')} failed: ${r.stderr}`)
    return r.stdout
  }
  const inNs = (n: string, argv: string[]): string[] => ['ip', 'netns', 'exec', n, ...argv]
  const cleanup = (): void => {
    for (const c of children) c.kill('SIGKILL')
    for (const n of Object.values(ns)) {
      spawnSync('ip', ['netns', 'pids', n], { encoding: 'utf8' }).stdout?.split('\n').filter(Boolean).forEach(p => { try { process.kill(Number(p), 'SIGKILL') } catch {} })
      spawnSync('ip', ['netns', 'del', n])
    }
    rmSync(dir, { recursive: true, force: true })
  }
  process.on('exit', cleanup)
  process.on('SIGINT', () => process.exit(130))

  for (const n of Object.values(ns)) {
    sh(['ip', 'netns', 'add', n])
    sh(inNs(n, ['ip', 'link', 'set', 'lo', 'up']))
  }
  const veth = (x: string, y: string, [ax, ay]: string[], name: string): void => {
    sh(['ip', 'link', 'add', `${name}x`, 'netns', x, 'type', 'veth', 'peer', 'name', `${name}y`, 'netns', y])
    sh(inNs(x, ['ip', 'addr', 'add', `${ax}/24`, 'dev', `${name}x`]))
    sh(inNs(y, ['ip', 'addr', 'add', `${ay}/24`, 'dev', `${name}y`]))
    sh(inNs(x, ['ip', 'link', 'set', `${name}x`, 'up']))
    sh(inNs(y, ['ip', 'link', 'set', `${name}y`, 'up']))
  }
  veth(ns.a, ns.b, addr.ab, `vab${tag}`)
  veth(ns.a, ns.r, addr.ar, `var${tag}`)
  veth(ns.b, ns.r, addr.br, `vbr${tag}`)

  const side = (name: string, ip: string): BenchNode & { wg: ReturnType<typeof generateWireGuardKeyPair> } => {
    const machine = generateMachineKeyPair()
    const wg = generateWireGuardKeyPair()
    return {
      machine,
      wg,
      node: {
        id: `bench-${name}`, name, fqdn: `${name}.warren.internal`, tags: [], machineKey: machine.publicKey, wgKey: wg.publicKey,
        ipv4: ip, ipv6: `fd7a:115c:a1e0::${name === 'a' ? 1 : 2}`, status: 'active', ephemeral: false, online: true,
        created: new Date().toISOString(), endpoints: []
      }
    }
  }
  const A = side('a', '100.64.0.1')
  const B = side('b', '100.64.0.2')
  for (const [n, me, peer, peerDirect] of [[ns.a, A, B, addr.ab[1]], [ns.b, B, A, addr.ab[0]]] as const) {
    const i = n === ns.a ? ifn.a : ifn.b
    sh(inNs(n, ['wireguard-go', i]))
    await withSecretFile(me.wg.privateKey, async path => {
      sh(inNs(n, ['wg', 'set', i, 'private-key', path, 'listen-port', '51820', 'peer', peer.wg.publicKey, 'allowed-ips', `${peer.node.ipv4}/32`, 'endpoint', `${peerDirect!}:51820`]))
    })
    sh(inNs(n, ['ip', 'addr', 'add', `${me.node.ipv4}/32`, 'dev', i]))
    sh(inNs(n, ['ip', 'link', 'set', i, 'up']))
    sh(inNs(n, ['ip', 'route', 'add', '100.64.0.0/10', 'dev', i]))
  }

  const nodesFile = join(dir, 'nodes.json')
  writeFileSync(nodesFile, JSON.stringify([A.node, B.node]))
  /**
   * startRelayed starts a relay and both clients with `settings` (node flags and NAME=value
   * environment variables), on relay port `port`, and returns the clients' loopback
   * endpoints for their peers; each --variant gets a set of its own, idle while another path
   * carries the round.
   */
  const startRelayed = async (name: string, settings: string, port: number): Promise<Record<string, string>> => {
    const words = settings.split(/\s+/).filter(Boolean)
    const env = words.filter(w => !w.startsWith('-') && w.includes('='))
    const argv = [...(env.length > 0 ? ['env', ...env] : []), nodeArgv[0]!, ...words.filter(w => !env.includes(w)), ...nodeArgv.slice(1)]
    const relay = spawn('ip', inNs(ns.r, [...argv, 'relay', '--nodes', nodesFile, '--listen', `0.0.0.0:${port}`]).slice(1), { stdio: ['ignore', 'pipe', 'pipe'] })
    children.push(relay)
    keepStats(`${name} relay`, relay)
    const fingerprint = (await waitLine(relay, /listening ([0-9a-f]{64})/, 'relay'))[1]!
    const endpoints: Record<string, string> = {}
    for (const [n, me, peer, relayAddr] of [[ns.a, A, B, addr.ar[1]], [ns.b, B, A, addr.br[1]]] as const) {
      const keyFile = join(dir, `${me.node.name}.key`)
      writeFileSync(keyFile, me.machine.secretKey, { mode: 0o600 })
      const c = spawn('ip', inNs(n, [...argv, 'client', '--url', `https://${relayAddr!}:${port}`, '--fingerprint', fingerprint, '--key-file', keyFile,
        '--wg-port', '51820', '--peer', peer.wg.publicKey, '--carrier', carrier, ...(offload ? [] : ['--no-offload'])]).slice(1), { stdio: ['ignore', 'pipe', 'pipe'] })
      children.push(c)
      keepStats(`${name} client ${me.node.name}`, c)
      // Both at once: the connection may come up before the endpoint is ready, or after.
      const [endpoint] = await Promise.all([waitLine(c, /endpoint (\S+)/, `client ${me.node.name}`), waitLine(c, /^up$/m, `client ${me.node.name}`)])
      endpoints[me.node.name] = endpoint[1]!
    }
    return endpoints
  }
  const relayPaths = new Map<string, Record<string, string>>()
  relayPaths.set('relay', await startRelayed('relay', '', 8443))
  for (const [i, settings] of variants.entries()) relayPaths.set(`relay ${settings}`, await startRelayed(`relay ${settings}`, settings, 8444 + i))

  const setPath = (path: string): void => {
    const endpoints = relayPaths.get(path)
    sh(inNs(ns.a, ['wg', 'set', ifn.a, 'peer', B.wg.publicKey, 'endpoint', endpoints === undefined ? `${addr.ab[1]!}:51820` : endpoints.a!]))
    sh(inNs(ns.b, ['wg', 'set', ifn.b, 'peer', A.wg.publicKey, 'endpoint', endpoints === undefined ? `${addr.ab[0]!}:51820` : endpoints.b!]))
    const deadline = Date.now() + 15_000
    while (spawnSync('ip', inNs(ns.a, ['ping', '-c', '1', '-W', '1', B.node.ipv4]).slice(1)).status !== 0) {
      if (Date.now() > deadline) throw new Error(`no ping over the ${path} path`)
    }
  }
  const iperf = (): number => {
    const r = spawnSync('ip', inNs(ns.a, ['iperf3', '-c', B.node.ipv4, '-t', String(seconds), '-J', '-O', '1']).slice(1), { encoding: 'utf8', timeout: (seconds + 20) * 1000 })
    if (r.status !== 0) throw new Error(`iperf3 failed: ${r.stderr || r.stdout.slice(0, 400)}`)
    return (JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second / 1e6
  }
  /** rxBytes is what went through R's veths, to show the relayed rounds crossed the relay. */
  const relayedBytes = (): number => Number(sh(inNs(ns.r, ['cat', `/sys/class/net/var${tag}y/statistics/rx_bytes`])).trim())

  const server = spawn('ip', inNs(ns.b, ['iperf3', '-s']).slice(1), { stdio: 'ignore' })
  children.push(server)
  const paths = ['direct', ...relayPaths.keys()]
  const runs = new Map<string, number[]>(paths.map(p => [p, []]))
  const crossed = new Map<string, number>()
  setPath('direct')
  iperf() // warm-up
  for (let r = 0; r < rounds; r++) {
    // Each round starts one path later, so no path always runs first (or right after another).
    for (const path of [...paths.slice(r % paths.length), ...paths.slice(0, r % paths.length)]) {
      setPath(path)
      const before = relayedBytes()
      runs.get(path)!.push(iperf())
      if (path !== 'direct') crossed.set(path, (crossed.get(path) ?? 0) + relayedBytes() - before)
    }
  }
  // A clean exit, so that profiles get written.
  for (const c of children) c.kill('SIGTERM')
  await new Promise(resolve => setTimeout(resolve, 1000))
  const label = offload ? carrier : `${carrier}, no offload`
  const direct = runs.get('direct')!
  /** ratios: of medians, and the median of per-round ratios (each relayed run against the same round's direct run) */
  const ratios = new Map([...relayPaths.keys()].map(p => [p, { medians: median(runs.get(p)!) / median(direct), perRound: median(runs.get(p)!.map((x, i) => x / direct[i]!)) }]))
  const table = printTable(['path', 'median Mbit/s', 'runs', 'ratio to direct', 'per-round ratio'], paths.map(p => [
    p === 'direct' ? 'direct (wireguard-go, same namespaces)' : `TLS relay (${label})${p === 'relay' ? '' : `, ${p.slice(6)}`}`,
    median(runs.get(p)!).toFixed(0), runs.get(p)!.map(x => x.toFixed(0)).join(' '),
    p === 'direct' ? '1.00' : ratios.get(p)!.medians.toFixed(3), p === 'direct' ? '1.00' : ratios.get(p)!.perRound.toFixed(3)
  ]))
  const { medians: ratio, perRound: pairRatio } = ratios.get('relay')!
  console.log(table)
  for (const [name, line] of lastStats) console.log(`${name}: ${line}`)
  for (const [name, n] of [['A', ns.a], ['B', ns.b]] as const) {
    const udp = sh(inNs(n, ['cat', '/proc/net/snmp'])).split('\n').filter(l => l.startsWith('Udp:'))
    const [head, vals] = udp.map(l => l.split(/\s+/).slice(1))
    console.log(`UDP in ${name}: ${head!.map((h, i) => `${h}=${vals![i]!}`).filter(x => /Errors/.test(x)).join(' ')}`)
  }
  for (const [path, bytes] of crossed) console.log(`${path}: ${(bytes / 1e6).toFixed(0)} MB crossed the relay's veth from A`)
  const load = loadLine(loadAtStart, loadNow())
  console.log(load)
  console.log(`target: TLS relay / direct >= 0.3 -> ${ratio >= 0.3 ? 'met' : 'NOT met'} (ratio of medians ${ratio.toFixed(3)}, median per-round ratio ${pairRatio.toFixed(3)})`)
  if (process.argv.includes('--write')) {
    writeResults(`TLS relay throughput (${label})`, `Command: \`node bench/dist/src/tls-relay-bench.js --rounds ${rounds} --seconds ${seconds} --carrier ${carrier}${offload ? '' : ' --no-offload'}${variants.map(v => ` --variant "${v}"`).join('')} --write\` (root)\n\n` +
      'TCP, one stream, iperf3 from namespace A to B through wireguard-go, with WireGuard\'s endpoint for the peer either the peer itself (direct, over the A-B veth) or the TLS relay client\'s loopback port (relayed: A\'s client, one TLS connection to the relay in namespace R, B\'s client). The relay is the controller\'s relay code on its own HTTPS server. Each --variant is one more relayed path with a relay and clients of its own, started with those node flags and environment variables. Each round runs every path once, starting one path later than the round before.\n\n' + table +
      `\nRatio TLS relay / direct: **${ratio.toFixed(3)}** of medians, **${pairRatio.toFixed(3)}** median of per-round ratios (target >= 0.3). ${(crossed.get('relay')! / 1e6).toFixed(0)} MB crossed the relay's veth during the relayed rounds.\n\n` +
      'Every relayed packet is copied by three Node processes (client A, relay, client B) on a 2-core machine shared with both wireguard-go processes and iperf3. ' +
      (offload
        ? 'The clients\' loopback sockets use UDP segmentation offload: WireGuard\'s batches arrive coalesced (UDP_GRO) and cross the relay as one BATCH frame, and the receiving client hands runs of packets to WireGuard in one send (UDP_SEGMENT).\n'
        : 'With --no-offload each client moves one UDP datagram per packet to and from WireGuard, and every packet is its own frame.\n') + load + '\n')
  }
}

const role = process.argv[2]
if (role === 'relay') await runRelay()
else if (role === 'client') await runClient()
else await orchestrate().catch(e => { console.error(e instanceof Error ? e.message : e); process.exitCode = 1 })
