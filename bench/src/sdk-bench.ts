/**
 * sdk-bench measures what `@warren/sdk` adds on top of a plain socket, with a real
 * controller and two real daemons in network namespaces (B admits A on one TCP port), in
 * one run and from inside A's namespace:
 * - connect latency: `w.dial('b:PORT')` against `net.connect(B's mesh IPv4, PORT)` to the
 *   same listener on B, alternating connection by connection, and beside them the LocalAPI
 *   peer list call alone (what resolving a name asks the daemon when dial's list is stale)
 *   and a status call alone (what it asked before: the same list plus WireGuard's counters);
 * - the throughput of one TCP stream over the mesh, opened with `dial` or with
 *   `net.connect`, `--seconds` each, alternating which goes first round by round.
 * The measuring code runs in A's namespace as a process of its own (`ip netns exec`, this
 * file in `client` mode, given A's LocalAPI socket); the listener on B is this file in
 * `sink` mode: it counts the bytes of each connection and, when the sender ends, answers
 * with the count, so throughput is what B received.
 * Needs root, wg, wireguard-go (or kernel WireGuard), nft.
 *
 *   node bench/dist/src/sdk-bench.js [--rounds 5] [--connections 100] [--seconds 3] [--write]
 */
import { fileURLToPath } from 'node:url'
import { connect as netConnect, createServer, Socket } from 'node:net'
import { createTeardownScope, netnsSkipReason, waitFor, type ProcessHandle } from '@warren/test'
import { connect, createLocalClient, createWarren, type Warren } from '@warren/sdk'
import { median, percentile, printTable, writeResults, argValue, loadNow, loadLine } from './report.js'
import { createClientServerMesh } from './client-server-mesh.js'

const PORT = 7070
const SELF_ARGV = [process.execPath, fileURLToPath(import.meta.url)]

/** The goals: dialing by name adds under 1 ms; a stream opened by dial is as fast as one from net.connect. */
const MAX_DIAL_OVERHEAD_MS = 1
const MIN_STREAM_RATIO = 0.95

const POLICY = `{
  "tagOwners": { "tag:client": ["bench@"], "tag:server": ["bench@"] },
  "acls": [
    { "action": "accept", "src": ["tag:client"], "dst": ["tag:server:${PORT}"], "proto": "tcp" },
    { "action": "accept", "src": ["tag:client"], "dst": ["tag:server:*"], "proto": "icmp" }
  ]
}
`

/** RoundResult is what the client prints for one round, as one JSON line. */
interface RoundResult {
  round: number
  /**
   * connect times, ms: dial by name, dial by name asking the daemon's peer list each time,
   * net.connect to the address; and LocalAPI peer list and status calls alone
   */
  dialMs: number[]
  freshMs: number[]
  netMs: number[]
  peersMs: number[]
  statusMs: number[]
  /** one stream each, Mbit/s as B counted it */
  dialMbps: number
  netMbps: number
  /** which stream ran first this round */
  first: 'dial' | 'net'
}

/** exitWithParent ends this process when the bench that started it is gone, so nothing is left running. */
function exitWithParent (): void {
  const parent = process.ppid
  setInterval(() => { if (process.ppid !== parent) process.exit(1) }, 1000).unref()
}

/** runSink listens on PORT (all addresses) and answers each sender's end with the byte count it received. */
async function runSink (): Promise<void> {
  exitWithParent()
  const server = createServer(sock => {
    let bytes = 0
    sock.on('data', b => { bytes += b.length })
    sock.on('end', () => { sock.end(`${bytes}\n`) })
    sock.on('error', () => undefined)
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(PORT, '::', () => { resolve() })
  })
  process.stdout.write('listening\n')
}

/** connected resolves with the socket once it connects. */
async function connected (sock: Socket): Promise<Socket> {
  return await new Promise<Socket>((resolve, reject) => {
    sock.once('error', reject)
    sock.once('connect', () => { sock.off('error', reject); resolve(sock) })
  })
}

/** timed runs one open, returns how long it took (ms) and closes the socket it opened. */
async function timed (open: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now()
  const s = await open()
  const ms = performance.now() - t0
  if (s instanceof Socket) s.destroy()
  return ms
}

/** stream pushes bytes through the socket for `seconds`, then ends it and returns the Mbit/s B counted. */
async function stream (sock: Socket, seconds: number): Promise<number> {
  const chunk = Buffer.alloc(64 * 1024, 0x61)
  let reply = ''
  sock.on('data', b => { reply += String(b) })
  const replied = new Promise<void>((resolve, reject) => {
    sock.once('end', resolve)
    sock.once('error', reject)
  })
  const t0 = performance.now()
  const stopAt = t0 + seconds * 1000
  await new Promise<void>(resolve => {
    const pump = (): void => {
      while (performance.now() < stopAt) {
        if (!sock.write(chunk)) { sock.once('drain', pump); return }
      }
      resolve()
    }
    pump()
  })
  sock.end()
  await replied
  const ms = performance.now() - t0
  sock.destroy()
  const bytes = Number(reply.trim())
  if (!Number.isFinite(bytes) || bytes <= 0) throw new Error(`the sink on B answered '${reply.trim()}' instead of a byte count`)
  return bytes * 8 / ms / 1000
}

/**
 * runClient measures from inside A's namespace through A's daemon at `socket`: per round,
 * `connections` opens of each kind in rotating order, then one stream of each kind.
 */
async function runClient (socket: string, name: string, ip: string, rounds: number, connections: number, seconds: number): Promise<void> {
  exitWithParent()
  const w: Warren = await connect({ socket })
  // The calls alone go through a client of its own, so they do not refresh the peer list dial reuses.
  const local = createLocalClient({ socketPath: socket })
  const ways = {
    dial: async () => await w.dial(`${name}:${PORT}`),
    // A new mesh view each time has no peer list to reuse: every dial asks the daemon for it.
    fresh: async () => await createWarren(local).dial(`${name}:${PORT}`),
    net: async () => await connected(netConnect({ host: ip, port: PORT })),
    peers: async () => await local.peers(),
    status: async () => await local.status()
  }
  const order = ['dial', 'fresh', 'net', 'peers', 'status'] as const
  // Warm-up: JIT, the daemon's LocalAPI, the WireGuard session and the sink.
  for (let i = 0; i < 30; i++) for (const k of order) await timed(ways[k])
  await stream(await ways.dial(), 0.5)
  await stream(await ways.net(), 0.5)
  for (let round = 0; round < rounds; round++) {
    const ms: Record<typeof order[number], number[]> = { dial: [], fresh: [], net: [], peers: [], status: [] }
    for (let i = 0; i < connections; i++) {
      for (let j = 0; j < order.length; j++) {
        const k = order[(i + j) % order.length]!
        ms[k].push(await timed(ways[k]))
      }
    }
    const first = round % 2 === 0 ? 'dial' : 'net'
    const mbps = { dial: 0, net: 0 }
    for (const k of first === 'dial' ? ['dial', 'net'] as const : ['net', 'dial'] as const) mbps[k] = await stream(await ways[k](), seconds)
    const r: RoundResult = { round, dialMs: ms.dial, freshMs: ms.fresh, netMs: ms.net, peersMs: ms.peers, statusMs: ms.status, dialMbps: mbps.dial, netMbps: mbps.net, first }
    process.stdout.write(JSON.stringify(r) + '\n')
  }
  await w.close()
  process.stdout.write('done\n')
}

async function run (): Promise<void> {
  const rounds = Number(argValue('--rounds', '5'))
  const connections = Number(argValue('--connections', '100'))
  const seconds = Number(argValue('--seconds', '3'))
  for (const [flag, v] of [['--rounds', rounds], ['--connections', connections], ['--seconds', seconds]] as const) {
    if (!Number.isFinite(v) || v <= 0) throw new Error(`${flag} must be a number above 0 (got '${argValue(flag, '')}')`)
  }
  const command = `node bench/dist/src/sdk-bench.js --rounds ${rounds} --connections ${connections} --seconds ${seconds}${process.argv.includes('--write') ? ' --write' : ''}`
  const skip = netnsSkipReason()
  if (skip !== false) throw new Error(`sdk-bench needs root and network namespaces: ${skip}`)
  const load0 = loadNow()

  const { a: na, b: nb } = await createClientServerMesh(scope.t, POLICY, 'sdk bench')
  await waitFor(async () => (await na.host.exec(['ping', '-n', '-c', '1', '-W', '1', nb.ipv4], { allowFail: true })).exitCode === 0,
    { timeoutMs: 60_000, message: 'A pinging B over the mesh' })

  const sink = nb.host.spawn([...SELF_ARGV, 'sink'])
  await sink.waitForLine(/^listening$/, 30_000)
  console.error(`measuring from A: ${rounds} rounds of ${connections} connections of each kind and a ${seconds} s stream of each kind`)
  const client: ProcessHandle = na.host.spawn([...SELF_ARGV, 'client', na.socket, nb.name, nb.ipv4, String(rounds), String(connections), String(seconds)])
  const results: RoundResult[] = []
  for (let r = 0; r < rounds; r++) {
    const line = await client.waitForLine(new RegExp(`^\\{"round":${r},.*\\}$`), connections * 5 * 1000 + seconds * 2000 + 120_000)
    const res = JSON.parse(line[0]) as RoundResult
    results.push(res)
    console.error(`round ${r + 1}/${rounds}: dial ${median(res.dialMs).toFixed(2)} ms, asking the peer list ${median(res.freshMs).toFixed(2)} ms, net.connect ${median(res.netMs).toFixed(2)} ms, peers ${median(res.peersMs).toFixed(2)} ms, status ${median(res.statusMs).toFixed(2)} ms;` +
      ` streams dial ${res.dialMbps.toFixed(0)}, net.connect ${res.netMbps.toFixed(0)} Mbit/s (${res.first === 'dial' ? 'dial' : 'net.connect'} first)`)
  }
  await client.waitForLine(/^done$/, 30_000)
  const load1 = loadNow()

  const all = (f: (r: RoundResult) => number[]): number[] => results.flatMap(f)
  const net = median(all(r => r.netMs))
  const overhead = median(all(r => r.dialMs)) - net
  const freshOverhead = median(all(r => r.freshMs)) - net
  const peers = median(all(r => r.peersMs))
  const status = median(all(r => r.statusMs))
  const perRound = (f: (r: RoundResult) => number[]): number[] => results.map(r => median(f(r)) - median(r.netMs))
  const f2 = (x: number): string => x.toFixed(2)
  const latRow = (name: string, f: (r: RoundResult) => number[]): string[] => {
    const xs = all(f)
    return [name, f2(median(xs)), f2(percentile(xs, 90)), f2(percentile(xs, 99)), String(xs.length), results.map(r => f2(median(f(r)))).join(' ')]
  }
  const diffRow = (name: string, f: (r: RoundResult) => number[]): string[] =>
    [name, f2(median(all(f)) - net), '', '', '', perRound(f).map(f2).join(' ')]
  const latTable = printTable(['open from A (to the same listener on B)', 'median ms', 'p90 ms', 'p99 ms', 'n', 'per-round medians'], [
    latRow(`\`w.dial('b:${PORT}')\` (SDK, by name)`, r => r.dialMs),
    latRow(`\`w.dial('b:${PORT}')\` asking the daemon's peer list on each dial`, r => r.freshMs),
    latRow(`\`net.connect(B's mesh IPv4, ${PORT})\` (baseline)`, r => r.netMs),
    latRow('LocalAPI `GET /v1/peers` alone', r => r.peersMs),
    latRow('LocalAPI `GET /v1/status` alone', r => r.statusMs),
    diffRow('dial - net.connect (difference of medians)', r => r.dialMs),
    diffRow('dial asking the peer list each time - net.connect', r => r.freshMs)
  ])
  const dialMbps = results.map(r => r.dialMbps)
  const netMbps = results.map(r => r.netMbps)
  const ratio = median(dialMbps) / median(netMbps)
  const perRoundRatio = median(results.map(r => r.dialMbps / r.netMbps))
  const fmt = (x: number): string => x.toFixed(0)
  const tputTable = printTable(['one TCP stream A -> B over the mesh', 'median Mbit/s', 'runs', 'of net.connect'], [
    [`socket from \`w.dial('b:${PORT}')\``, fmt(median(dialMbps)), dialMbps.map(fmt).join(' '), ratio.toFixed(3)],
    [`socket from \`net.connect(B's mesh IPv4, ${PORT})\` (baseline)`, fmt(median(netMbps)), netMbps.map(fmt).join(' '), '1.000'],
    ['dial / net.connect, per round (first in the round: d or n)', '', results.map(r => `${(r.dialMbps / r.netMbps).toFixed(2)}${r.first[0]!}`).join(' '), perRoundRatio.toFixed(3)]
  ])
  const summary = [
    `Dial overhead: **${f2(overhead)} ms** difference of medians (${f2(median(perRound(r => r.dialMs)))} ms median of per-round differences; goal < ${MAX_DIAL_OVERHEAD_MS} ms): ${overhead < MAX_DIAL_OVERHEAD_MS ? 'met' : 'NOT met'}.`,
    `A dial that asks the daemon's peer list first (a new mesh view each time) adds ${f2(freshOverhead)} ms; ` +
    `\`GET /v1/peers\` alone takes ${f2(peers)} ms, against ${f2(status)} ms for \`GET /v1/status\`, which the SDK asked before (the daemon runs \`wg show dump\` for the peers' counters).`,
    `Stream through a dialed socket / through net.connect: **${ratio.toFixed(3)}** of medians, ${perRoundRatio.toFixed(3)} median of per-round ratios (goal ~1.0, >= ${MIN_STREAM_RATIO}): ${ratio >= MIN_STREAM_RATIO ? 'met' : 'NOT met'}.`,
    `Data plane: ${(await na.status()).dataPlane?.implementation ?? 'unknown'}. ` + loadLine(load0, load1)
  ].join('\n')
  console.log(latTable)
  console.log(tputTable)
  console.log(summary)
  if (process.argv.includes('--write')) {
    writeResults('SDK: dial and stream', `Command: \`${command}\` (root; \`npx tsc -b\` first)\n\n` +
      'One run: a real controller and two daemons in network namespaces, B admitting A on tcp/' + PORT + '. ' +
      'The measuring process runs in A\'s namespace (`ip netns exec`), talks to A\'s daemon over its LocalAPI socket with `connect()`, ' +
      'and opens connections to one listener on B (a plain net.Server on all addresses). ' +
      `Each of ${rounds} rounds opens ${connections} connections of each kind, rotating the order connection by connection, ` +
      'timing from the call until the socket is connected (then closes it). `w.dial` reuses the peer list it got from the daemon for 1 s, ' +
      'so a few of its dials per round ask for the list again (they show in p99); the second row makes a new mesh view (`createWarren`) for each dial, ' +
      'so every dial asks the daemon for its peer list (`GET /v1/peers`) first. Then it pushes one TCP stream of each kind for ' +
      `${seconds} s, alternating which goes first; B counts the bytes it received and answers the count when the sender ends, ` +
      'so Mbit/s is what arrived over the time from the first write to that answer.\n\n' +
      latTable + '\n' + tputTable + '\n' + summary)
  }
}

const scope = createTeardownScope(console.error)

const mode = process.argv[2]
if (process.argv[1] === fileURLToPath(import.meta.url) && mode === 'sink') {
  await runSink()
} else if (process.argv[1] === fileURLToPath(import.meta.url) && mode === 'client') {
  const [socket, name, ip, rounds, connections, seconds] = process.argv.slice(3)
  await runClient(socket!, name!, ip!, Number(rounds), Number(connections), Number(seconds))
} else {
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => { scope.fail(); void scope.cleanup().then(() => process.exit(130)) })
  run().catch(e => { scope.fail(); console.error(e instanceof Error ? e.message : e); process.exitCode = 1 }).finally(scope.cleanup)
}
