/**
 * nft-bench measures Warren's nftables enforcement in a fresh network namespace: ruleset
 * size and atomic apply time for 100, 1,000 and 10,000 peers, and the time of a one-peer
 * update at each size (target at 10,000: under 20 ms). Baselines from the same run: the same
 * one-peer change done as a full table rebuild, and `nft list table`. It also measures
 * what a packet pays for the set lookups: UDP packets per second through the table with
 * 100 vs 10,000 peers' elements, against no table.
 *
 * The daemon runs inside its network namespace and starts `nft` directly, so the one-peer
 * update is timed the same way: the bench starts itself inside the namespace as a worker
 * (`ip netns exec NS node nft-bench.js --worker ...`, which reports JSON), and `ip netns exec`
 * is not in the timed path. The older figure, with `ip netns exec nft` per command, is kept
 * as a comparison column.
 *
 * Run: npx tsc -b bench && node bench/dist/src/nft-bench.js [--runs 7] [--write]
 * (root; --write replaces the `## nftables` section of bench/RESULTS.md)
 */
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { loadavg } from 'node:os'
import { performance } from 'node:perf_hooks'
import type { FilterRule } from '@warren/protocol'
import { compileFilter, createCommandRunner, createNftablesFirewall, type CommandRunner } from '@warren/node'
import { argValue, median, printTable, writeResults } from './report.js'

const RUNS = Number(argValue('--runs', '7'))
const SIZES = [100, 1000, 10000]

/**
 * peers makes a filter in which each peer (an IPv4 and an IPv6 address) may reach TCP 22,
 * TCP/UDP 443 and ports of its own (two, or with `wide` a range of 100, which lands in the
 * interval sets), so that no two peers' elements merge.
 */
function peers (n: number, extra = 0, wide = false): FilterRule[] {
  const out: FilterRule[] = []
  for (let i = 0; i < n + extra; i++) {
    const v4 = `100.64.${(i >> 7) & 255}.${(i & 127) * 2}`
    const v6 = `fd7a:115c:a1e0::${(i * 2).toString(16)}`
    const own = wide ? { first: 20000 + (i % 400) * 100, last: 20099 + (i % 400) * 100 } : { first: 10000 + (i % 5000) * 4, last: 10001 + (i % 5000) * 4 }
    out.push({ srcs: [v4, v6], protos: [6], ports: [{ first: 22, last: 22 }, own] })
    out.push({ srcs: [v4, v6], protos: [6, 17], ports: [{ first: 443, last: 443 }] })
  }
  return out
}

const host = createCommandRunner()
const ms = (t0: number): number => performance.now() - t0
const fmt = (x: number): string => x < 10 ? x.toFixed(2) : x < 100 ? x.toFixed(1) : x.toFixed(0)

async function withNamespaces<T> (fn: (ns: { node: string, peer: string, mesh: string }) => Promise<T>): Promise<T> {
  const tag = randomBytes(3).toString('hex')
  const ns = { node: `wbn${tag}`, peer: `wbp${tag}`, mesh: `wm${tag}` }
  try {
    await host.run(['ip', 'netns', 'add', ns.node])
    await host.run(['ip', 'netns', 'add', ns.peer])
    await host.run(['ip', 'link', 'add', ns.mesh, 'netns', ns.node, 'type', 'veth', 'peer', 'name', `wa${tag}`, 'netns', ns.peer])
    const inNode = createCommandRunner({ netns: ns.node })
    const inPeer = createCommandRunner({ netns: ns.peer })
    for (const c of [['ip', 'link', 'set', 'lo', 'up'], ['ip', 'link', 'set', ns.mesh, 'up'], ['ip', 'addr', 'add', '100.64.200.1/16', 'dev', ns.mesh]]) await inNode.run(c)
    for (const c of [['ip', 'link', 'set', 'lo', 'up'], ['ip', 'link', 'set', `wa${tag}`, 'up'], ['ip', 'addr', 'add', '100.64.0.0/16', 'dev', `wa${tag}`]]) await inPeer.run(c)
    return await fn(ns)
  } finally {
    await host.run(['ip', 'netns', 'del', ns.node], { allowFail: true })
    await host.run(['ip', 'netns', 'del', ns.peer], { allowFail: true })
  }
}

interface SizeResult { peers: number, elements: number, scriptBytes: number, compileMs: number, applyMs: number, updateMs: number, updateNftMs: number, updateBytes: number, rebuildMs: number, listMs: number, floorMs: number, inside: WorkerResult }

/** WorkerResult is what the worker measured inside the namespace, as the daemon runs (medians, ms). */
interface WorkerResult {
  /** one-peer update: the whole set() (compile, diff, check, apply) */
  setMs: number
  /** of which nft: check + apply */
  nftMs: number
  checkMs: number
  applyMs: number
  /** starting nft (`nft --version`) through the same command runner: the process floor */
  startMs: number
  /** the same check + apply adding or deleting one element of a tiny table: the nft floor */
  floorMs: number
}

/**
 * worker runs inside the node's namespace (argv: --worker TABLE IFACE PEERS): it builds its
 * own table with PEERS peers, then times one-peer updates and prints a WorkerResult as JSON.
 */
async function worker (): Promise<void> {
  const [table, iface, n] = process.argv.slice(process.argv.indexOf('--worker') + 1) as [string, string, string]
  const inner = createCommandRunner()
  const runner = timedRunner(inner)
  const checkTimes: number[] = []
  const applyTimes: number[] = []
  const split: CommandRunner = {
    async run (argv, opts) {
      const t0 = performance.now()
      try { return await runner.run(argv, opts) } finally {
        if (argv.includes('-f')) (argv.includes('--check') ? checkTimes : applyTimes).push(ms(t0))
      }
    }
  }
  const fw = createNftablesFirewall({ runner: split, table })
  const ctx = { interfaceName: iface }
  const base = peers(Number(n))
  const plusOne = peers(Number(n), 1)
  await fw.set(base, ctx)
  // one warm-up pair, as the daemon is warm after its first map
  await fw.set(plusOne, ctx)
  await fw.set(base, ctx)
  checkTimes.length = 0
  applyTimes.length = 0
  const setTimes: number[] = []
  const nftTimes: number[] = []
  const startTimes: number[] = []
  const floorTimes: number[] = []
  await inner.run(['nft', '-f', '-'], { input: `table inet ${table}floor {\n  set s {\n    type ipv4_addr . inet_proto . inet_service\n  }\n}\n` })
  for (let r = 0; r < RUNS; r++) {
    for (const f of [plusOne, base]) {
      // the filter arrives as JSON in the daemon: parse a fresh copy, untimed
      const copy = JSON.parse(JSON.stringify(f)) as FilterRule[]
      runner.nftMs = 0
      const t0 = performance.now()
      await fw.set(copy, ctx)
      setTimes.push(ms(t0))
      nftTimes.push(runner.nftMs)
      if (fw.lastApply()!.kind !== 'elements') throw new Error(`a one-peer change was a ${fw.lastApply()!.kind}`)
      const t1 = performance.now()
      await inner.run(['nft', '--version'])
      startTimes.push(ms(t1))
      const script = `${f === plusOne ? 'add' : 'delete'} element inet ${table}floor s { 100.65.0.1 . 6 . 22 }\n`
      const t2 = performance.now()
      await inner.run(['nft', '--check', '-f', '-'], { input: script })
      await inner.run(['nft', '-f', '-'], { input: script })
      floorTimes.push(ms(t2))
    }
  }
  await inner.run(['nft', 'delete', 'table', 'inet', `${table}floor`])
  await fw.close()
  const out: WorkerResult = { setMs: median(setTimes), nftMs: median(nftTimes), checkMs: median(checkTimes), applyMs: median(applyTimes), startMs: median(startTimes), floorMs: median(floorTimes) }
  process.stdout.write(JSON.stringify(out) + '\n')
}

/** measureInside runs the worker in the node's namespace and reads its result. */
async function measureInside (n: number, ns: { node: string, mesh: string }): Promise<WorkerResult> {
  const r = await host.run(['ip', 'netns', 'exec', ns.node, process.execPath, fileURLToPath(import.meta.url), '--runs', String(RUNS), '--worker', `benchw${n}`, ns.mesh, String(n)])
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as WorkerResult
}

/** timedRunner adds up the time spent in `nft` transactions (check and apply), apart from compiling. */
function timedRunner (inner: CommandRunner): CommandRunner & { nftMs: number, lastScript: string } {
  const r: CommandRunner & { nftMs: number, lastScript: string } = {
    nftMs: 0,
    lastScript: '',
    async run (argv, opts) {
      const t0 = performance.now()
      if (argv.includes('-f')) r.lastScript = opts?.input ?? ''
      try { return await inner.run(argv, opts) } finally { if (argv.includes('-f')) r.nftMs += ms(t0) }
    }
  }
  return r
}

async function measureSize (n: number, ns: { node: string, mesh: string }): Promise<SizeResult> {
  const runner = timedRunner(createCommandRunner({ netns: ns.node }))
  const tableName = `bench${n}`
  const ctx = { interfaceName: ns.mesh }
  const base = peers(n)
  const plusOne = peers(n, 1)
  const applyTimes: number[] = []
  const compileTimes: number[] = []
  let elements = 0
  let scriptBytes = 0
  for (let r = 0; r < RUNS; r++) {
    // A fresh firewall each run, so every run is a first (whole-table) apply.
    await runner.run(['nft', '-f', '-'], { input: `add table inet ${tableName}\ndelete table inet ${tableName}\n` })
    const fw = createNftablesFirewall({ runner, table: tableName })
    let t0 = performance.now()
    compileFilter(base)
    compileTimes.push(ms(t0))
    t0 = performance.now()
    await fw.set(base, ctx)
    applyTimes.push(ms(t0))
    elements = fw.lastApply()!.elements
    scriptBytes = fw.lastApply()!.scriptBytes
  }
  // The whole-table scripts with and without the extra peer, for the rebuild baseline.
  const rebuildScripts: string[] = []
  for (const f of [plusOne, base]) {
    await runner.run(['nft', '-f', '-'], { input: `add table inet ${tableName}\ndelete table inet ${tableName}\n` })
    await createNftablesFirewall({ runner, table: tableName }).set(f, ctx)
    rebuildScripts.push(runner.lastScript)
  }
  const fw = createNftablesFirewall({ runner, table: tableName })
  await fw.set(base, ctx)
  // Floor: the same check + apply of one element on a tiny table, measured right after each
  // update, so that both see the same machine load.
  const floorTimes: number[] = []
  await runner.run(['nft', '-f', '-'], { input: `table inet ${tableName}floor {\n  set s {\n    type ipv4_addr . inet_proto . inet_service\n  }\n}\n` })
  const floor = async (verb: string): Promise<void> => {
    const script = `${verb} element inet ${tableName}floor s { 100.65.0.1 . 6 . 22 }\n`
    const t0 = performance.now()
    await runner.run(['nft', '--check', '-f', '-'], { input: script })
    await runner.run(['nft', '-f', '-'], { input: script })
    floorTimes.push(ms(t0))
  }
  const updateTimes: number[] = []
  const updateNftTimes: number[] = []
  let updateBytes = 0
  for (let r = 0; r < RUNS; r++) {
    // one peer joins, then leaves: element add, element delete
    for (const f of [plusOne, base]) {
      const t0 = performance.now()
      runner.nftMs = 0
      await fw.set(f, ctx)
      updateTimes.push(ms(t0))
      updateNftTimes.push(runner.nftMs)
      if (fw.lastApply()!.kind !== 'elements') throw new Error(`a one-peer change was a ${fw.lastApply()!.kind}`)
      updateBytes = fw.lastApply()!.scriptBytes
      await floor(f === plusOne ? 'add' : 'delete')
    }
  }
  // Baseline: the same one-peer change as a whole-table rebuild (check + apply, as Warren would).
  const rebuildTimes: number[] = []
  for (let r = 0; r < RUNS; r++) {
    const script = rebuildScripts[r % 2]!
    const t0 = performance.now()
    await runner.run(['nft', '--check', '-f', '-'], { input: script })
    await runner.run(['nft', '-f', '-'], { input: script })
    rebuildTimes.push(ms(t0))
  }
  const listTimes: number[] = []
  for (let r = 0; r < RUNS; r++) {
    const t0 = performance.now()
    await runner.run(['nft', 'list', 'table', 'inet', tableName])
    listTimes.push(ms(t0))
  }
  await runner.run(['nft', 'delete', 'table', 'inet', `${tableName}floor`])
  await fw.close()
  const inside = await measureInside(n, ns)
  return { peers: n, elements, scriptBytes, compileMs: median(compileTimes), applyMs: median(applyTimes), updateMs: median(updateTimes), updateNftMs: median(updateNftTimes), updateBytes, rebuildMs: median(rebuildTimes), listMs: median(listTimes), floorMs: median(floorTimes), inside }
}

/**
 * measureLookup floods 64-byte UDP (iperf3) from an allowed peer through the mesh interface
 * and counts what the node receives: the per-packet cost of the ruleset shows as a lower rate.
 * Each case has its own pair of namespaces, and the cases take turns, so that load from
 * elsewhere on the machine falls on all of them alike.
 */
async function measureLookup (): Promise<Array<{ name: string, pps: number }>> {
  // iperf3 needs its TCP control connection as well as the UDP flood
  const allowSink: FilterRule = { srcs: ['100.64.0.0'], protos: [6, 17], ports: [{ first: 5201, last: 5201 }] }
  const allowSinkRange: FilterRule = { srcs: ['100.64.0.0'], protos: [6, 17], ports: [{ first: 5200, last: 5300 }] }
  const cases: Array<{ name: string, filter?: FilterRule[], rates: number[], ns?: { node: string, peer: string } }> = [
    { name: 'no table', rates: [] },
    { name: '100 peers, hash hit', filter: [...peers(100), allowSink], rates: [] },
    { name: '10,000 peers, hash hit', filter: [...peers(10000), allowSink], rates: [] },
    { name: '100 peers with ranges, interval hit', filter: [...peers(100, 0, true), allowSinkRange], rates: [] },
    { name: '10,000 peers with ranges, interval hit', filter: [...peers(10000, 0, true), allowSinkRange], rates: [] }
  ]
  const nest = async (k: number): Promise<void> => {
    if (k === cases.length) {
      for (let round = 0; round < 5; round++) {
        for (const c of cases) {
          const ns = c.ns!
          const inNode = createCommandRunner({ netns: ns.node })
          const inPeer = createCommandRunner({ netns: ns.peer })
          await inNode.run(['iperf3', '-s', '-1', '-D', '-B', '100.64.200.1'])
          const argv = ['iperf3', '-u', '-b', '0', '-l', '64', '-t', '2', '-c', '100.64.200.1', '-B', '100.64.0.0', '--json']
          const deadline = Date.now() + 5000
          let res = await inPeer.run(argv, { allowFail: true })
          while (res.exitCode !== 0 && Date.now() < deadline) { // the server may not listen yet
            await new Promise(resolve => setTimeout(resolve, 50))
            res = await inPeer.run(argv, { allowFail: true })
          }
          const sum = (JSON.parse(res.stdout) as { end: { sum: { packets: number, lost_packets: number, seconds: number } } }).end.sum
          c.rates.push((sum.packets - sum.lost_packets) / sum.seconds)
        }
      }
      return
    }
    await withNamespaces(async ns => {
      const c = cases[k]!
      c.ns = ns
      if (c.filter !== undefined) await createNftablesFirewall({ runner: createCommandRunner({ netns: ns.node }), table: 'benchlookup' }).set(c.filter, { interfaceName: ns.mesh })
      await nest(k + 1)
    })
  }
  await nest(0)
  return cases.map(c => ({ name: c.name, pps: median(c.rates) }))
}

if (process.argv.includes('--worker')) {
  await worker()
  process.exit(0)
}

const started = new Date()
const results: SizeResult[] = []
let lookup: Array<{ name: string, pps: number }> = []
await withNamespaces(async ns => {
  for (const n of SIZES) {
    results.push(await measureSize(n, ns))
    process.stderr.write(`measured ${n} peers\n`)
  }
})
lookup = await measureLookup()

const sizeTable = printTable(
  ['peers', 'elements', 'script bytes', 'compile ms', 'atomic apply ms', 'one-peer update: nft ms', 'one-peer update: set() ms', 'update bytes', 'baseline: rebuild ms', 'baseline: nft list ms', 'floor: 1 element, tiny table ms'],
  results.map(r => [r.peers.toLocaleString('en-US'), String(r.elements), r.scriptBytes.toLocaleString('en-US'), fmt(r.compileMs), fmt(r.applyMs), fmt(r.inside.nftMs), fmt(r.inside.setMs), String(r.updateBytes), fmt(r.rebuildMs), fmt(r.listMs), fmt(r.floorMs)]))
const updateTable = printTable(
  ['peers', 'set() ms', 'nft check + apply ms', 'check ms', 'apply ms', 'nft start (nft --version) ms', 'floor: 1 element, tiny table ms', 'via ip netns exec: nft ms', 'via ip netns exec: set() ms'],
  results.map(r => [r.peers.toLocaleString('en-US'), fmt(r.inside.setMs), fmt(r.inside.nftMs), fmt(r.inside.checkMs), fmt(r.inside.applyMs), fmt(r.inside.startMs), fmt(r.inside.floorMs), fmt(r.updateNftMs), fmt(r.updateMs)]))
const base = lookup[0]?.pps ?? NaN
const lookupTable = printTable(['ruleset', 'UDP packets/s received', 'ratio to no table'],
  lookup.map(l => [l.name, Math.round(l.pps).toLocaleString('en-US'), (l.pps / base).toFixed(2)]))
const last = results[results.length - 1]!
const summary = `One-peer update at ${last.peers.toLocaleString('en-US')} peers, timed inside the namespace as the daemon runs: ` +
  `${fmt(last.inside.setMs)} ms for the whole \`set\` (target < 20 ms; compiling the whole filter once took ${fmt(last.compileMs)} ms in this run), of which ${fmt(last.inside.nftMs)} ms in nft ` +
  `(check ${fmt(last.inside.checkMs)} + apply ${fmt(last.inside.applyMs)}); starting nft alone takes ${fmt(last.inside.startMs)} ms, ` +
  `so two starts are ${fmt(2 * last.inside.startMs)} ms of it, and the same two runs on a tiny table take ${fmt(last.inside.floorMs)} ms. The nft part is ${(last.rebuildMs / last.inside.nftMs).toFixed(0)}x faster than rebuilding the table for the same change. ` +
  `Load average during the run: ${loadavg().map(x => x.toFixed(1)).join(' ')} (2 cores, shared).`
const body = `Command: \`npx tsc -b bench && node bench/dist/src/nft-bench.js --runs ${RUNS} --write\` (root), ${started.toISOString().slice(0, 10)}.
Each peer has an IPv4 and an IPv6 address allowed on TCP 22, TCP/UDP 443 and two ports of its
own (no elements merge). Single addresses with single ports go to hash sets. Times are medians
of ${RUNS} runs, wall clock, and include \`nft --check\` before every apply:
- compile: FilterRule[] to set elements (pure JS, the whole filter; parsed sources are kept
  between compiles, as in the daemon, where nearly all of them repeat);
- atomic apply: a first \`set\` (read-back, compile, check, one whole-table transaction);
- one-peer update, set(): one peer joins or leaves; the daemon's whole \`set\` (compile against
  the previous compile, diff, check, apply), timed in a worker started inside the namespace, so
  \`nft\` starts directly as in the daemon; the filter is a fresh copy each time, as if parsed
  from the map; nft: of that, the check + apply of the element diff;
- baselines: the same one-peer change done as a whole-table rebuild, \`nft list table\`, and
  the floor: two nft runs adding one element to a tiny table (these through \`ip netns exec\`).

${sizeTable}

Where a one-peer update's time goes (inside the namespace; the last two columns time the same
update from outside, through \`ip netns exec nft\` per command, as this bench did before):

${updateTable}

Before this change (same command, earlier on 2026-11-24 at a load average of about 6, 10,000
peers, through \`ip netns exec\`): nft 36.6 ms, set() 236 ms (a compile of the whole filter,
127 ms, then a diff of all elements). The machine's load moves these figures by 2x between
runs, so compare columns of one run. Now a one-peer
change patches the previous compile: only the rules that changed and the sources they name
are looked at again, and the diff costs what changed.

${summary}

Why the nft part stays above 20 ms here (strace of nft 1.0.6 on this kernel, 6.18, inside the
namespace): the check (\`nft --check\`) sends the batch and the kernel validates and then aborts
it inside that one sendmsg, which blocked about 9 ms in a traced run, whatever the table's size
(a tiny table's check costs as much); the apply's sendmsg returns at once, but after a delete the
closing of nft's netlink socket blocked 7 and 13 ms in two traced runs (the kernel seems to finish
freeing the deleted elements there), so a peer leaving costs more than a peer joining. Each run also starts a process (the nft start
column). Both runs are required (one atomic transaction, checked first); one \`nft -f\` without
the check would be atomic but unchecked, and a long-lived \`nft -i\` runs each line as its own
transaction, so neither is used. What is left to win is outside the firewall: the command
runner's execa start cost about 2-3 ms more than a bare spawn in a quick comparison, and an apply process started
while the check runs (stdin fed once the check passed) would hide one start; both need the
runner to change.

Per-packet cost of the set lookups: 64-byte UDP (iperf3 -u -b 0 -l 64, 2 s) from one allowed
peer across a veth into the node's namespace, packets received per second, median of 5 interleaved rounds. Every
packet is in the original direction, so each one goes through the set lookups. "No table"
also means no conntrack, which Warren's table turns on. In the "ranges" rows every peer has a
100-port range and the sender's own rule is a range too, so its packets are matched in the
interval (pipapo) set after missing the hash sets. Compare rows at 100 and 10,000 peers: the
lookup cost should not grow with the number of peers. On this shared machine the rates move
by about 15% between runs and rows swap places from run to run, so differences of that size
are noise.

${lookupTable}`

console.log(`\n## nftables\n\n${body}`)

if (process.argv.includes('--write')) {
  writeResults('nftables', body)
  console.log('wrote the nftables section of bench/RESULTS.md')
}
