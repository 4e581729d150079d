/**
 * nft-bench measures Warren's nftables enforcement in a fresh network namespace: ruleset
 * size and atomic apply time for 100, 1,000 and 10,000 peers, and the time of a one-peer
 * update at each size (target at 10,000: under 20 ms), apart for a peer joining (element
 * adds) and leaving (element deletes), through the daemon's nft session and, for comparison,
 * as one `nft -f` per update. Baselines from the same run: the same one-peer change done as a
 * full table rebuild, and `nft list table`. It also measures what a packet pays for
 * the set lookups: UDP packets per second through the table with 100 vs 10,000 peers'
 * elements, against no table.
 *
 * The daemon runs inside its network namespace and starts `nft` directly, so the one-peer
 * update is timed the same way: the bench starts itself inside the namespace as a worker
 * (`ip netns exec NS node nft-bench.js --worker ...`, which reports JSON), and `ip netns exec`
 * is not in the timed path.
 *
 * Run: npx tsc -b bench && node bench/dist/src/nft-bench.js [--runs 7] [--write]
 * (root; --write replaces the `## nftables` section of bench/RESULTS.md)
 */
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { loadavg } from 'node:os'
import { performance } from 'node:perf_hooks'
import type { FilterRule } from '@warren/protocol'
import { compileFilter, createCommandRunner, createNftablesFirewall, createNftSession, type CommandRunner, type CommandSession, type NftablesFirewall } from '@warren/node'
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

/**
 * group makes a filter of one rule: the n members of a group (an IPv4 and an IPv6 address
 * each, as in `peers`) may reach TCP 22, as a server that a whole team may log in to. With
 * `extra`, one more member, listed in the middle of the list rather than at its end.
 */
function group (n: number, extra = 0): FilterRule[] {
  const member = (i: number): string[] => [`100.64.${(i >> 7) & 255}.${(i & 127) * 2}`, `fd7a:115c:a1e0::${(i * 2).toString(16)}`]
  const srcs: string[] = []
  for (let i = 0; i < n; i++) {
    if (extra > 0 && i === n >> 1) for (let e = 0; e < extra; e++) srcs.push(...member(n + e))
    srcs.push(...member(i))
  }
  return [{ srcs, protos: [6], ports: [{ first: 22, last: 22 }] }]
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

interface SizeResult { peers: number, elements: number, scriptBytes: number, compileMs: number, applyMs: number, updateBytes: number, rebuildMs: number, listMs: number, inside: WorkerResult }

/** Split is one measure of the one-peer update: for a peer joining, leaving, and both. */
interface Split { join: number, leave: number, all: number }

/** WorkerResult is what the worker measured inside the namespace, as the daemon runs (medians, ms). */
interface WorkerResult {
  /** one-peer update: the whole set() (compile, diff, nft), through the nft session as the daemon does it */
  setMs: Split
  /** of which nft: from writing the update's line to the session until nft's answer came */
  nftMs: Split
  /** of which the rest: compile against the previous compile, diff, render (JS), the session's bookkeeping */
  jsMs: Split
  /** comparison: the same set() with a runner without sessions, so the update is one `nft -f -` */
  oneShotSetMs: Split
  /** of which the `nft -f -` run */
  oneShotNftMs: Split
  /** starting nft (`nft --version`) through the same command runner: the process floor */
  startMs: number
  /** the same one-element add or delete on a tiny table, as one `nft -f -`: the one-shot floor */
  floorMs: Split
  /** the same, through an nft session: the session floor */
  sessionFloorMs: Split
  /** bytes of the update script */
  updateBytes: number
  /** how many nft sessions the firewall started over all updates (2, one checking and one applying, when none broke) */
  sessionStarts: number
}

const split = (join: number[], leave: number[]): Split => ({ join: median(join), leave: median(leave), all: median([...join, ...leave]) })

/**
 * worker runs inside the node's namespace (argv: --worker TABLE IFACE PEERS [group]): it
 * builds its own table with PEERS peers (or one rule for a group of PEERS members), then
 * times one-peer (one-member) updates and prints a WorkerResult as JSON.
 * Two firewalls take turns on the one table: the daemon's (its runner can open an nft
 * session) and one whose runner cannot, which sends each update as one `nft -f -`. Each
 * applies a join and then the leave, so the table is back where the other left it.
 */
async function worker (): Promise<void> {
  const [table, iface, n, shape] = process.argv.slice(process.argv.indexOf('--worker') + 1) as [string, string, string, string | undefined]
  const make = shape === 'group' ? group : peers
  const inner = createCommandRunner()
  const runner = timedRunner(inner)
  const oneShotRunner = timedRunner({ run: inner.run })
  const fw = createNftablesFirewall({ runner, table })
  const ctx = { interfaceName: iface }
  const base = make(Number(n))
  const plusOne = make(Number(n), 1)
  await fw.set(base, ctx)
  const oneShot = createNftablesFirewall({ runner: oneShotRunner, table })
  await oneShot.up()
  // one warm-up pair each, as the daemon is warm after its first map
  for (const f of [fw, oneShot]) {
    await f.set(plusOne, ctx)
    await f.set(base, ctx)
  }
  const times = { set: [[], []], nft: [[], []], js: [[], []], oneShotSet: [[], []], oneShotNft: [[], []], floor: [[], []], sessionFloor: [[], []] } as Record<string, number[][]>
  const startTimes: number[] = []
  let updateBytes = 0
  const floorTable = `${table}floor`
  await inner.run(['nft', '-f', '-'], { input: `table inet ${floorTable} {\n  set s {\n    type ipv4_addr . inet_proto . inet_service\n  }\n}\n` })
  const floorSession = createNftSession({ runner: inner })
  const timeSet = async (f: NftablesFirewall, r: typeof runner, filter: FilterRule[]): Promise<[number, number]> => {
    // the filter arrives as JSON in the daemon: parse a fresh copy, untimed
    const copy = JSON.parse(JSON.stringify(filter)) as FilterRule[]
    r.nftMs = 0
    const t0 = performance.now()
    await f.set(copy, ctx)
    const took = ms(t0)
    const report = f.lastApply()!
    if (report.kind !== 'elements') throw new Error(`a one-peer change was a ${report.kind}`)
    updateBytes = report.scriptBytes
    return [took, r.nftMs]
  }
  for (let r = 0; r < RUNS; r++) {
    for (const [k, f] of [plusOne, base].entries()) {
      const [took, nft] = await timeSet(fw, runner, f)
      if (runner.oneShots > 0) throw new Error('an element update went to nft -f instead of the session')
      times.set![k]!.push(took)
      times.nft![k]!.push(nft)
      times.js![k]!.push(took - nft)
    }
    // The kernel frees the elements the session deleted after an RCU grace period, and the
    // next nft process to close its netlink socket before that waits for it: let it pass, so
    // that the one-shot join does not pay for the session's leave.
    await new Promise(resolve => setTimeout(resolve, 100))
    for (const [k, f] of [plusOne, base].entries()) {
      const [took, nft] = await timeSet(oneShot, oneShotRunner, f)
      times.oneShotSet![k]!.push(took)
      times.oneShotNft![k]!.push(nft)
    }
    for (const k of [0, 1]) {
      const t1 = performance.now()
      await inner.run(['nft', '--version'])
      startTimes.push(ms(t1))
      const script = `${k === 0 ? 'add' : 'delete'} element inet ${floorTable} s { 100.65.0.1 . 6 . 22 }\n`
      const t2 = performance.now()
      await inner.run(['nft', '-f', '-'], { input: script })
      times.floor![k]!.push(ms(t2))
      const t3 = performance.now()
      await floorSession.apply(script.replace('100.65.0.1', '100.65.0.2'))
      times.sessionFloor![k]!.push(ms(t3))
    }
  }
  await floorSession.close()
  await inner.run(['nft', 'delete', 'table', 'inet', floorTable])
  const sessionStarts = runner.sessionStarts
  await fw.close()
  const out: WorkerResult = {
    setMs: split(times.set![0]!, times.set![1]!),
    nftMs: split(times.nft![0]!, times.nft![1]!),
    jsMs: split(times.js![0]!, times.js![1]!),
    oneShotSetMs: split(times.oneShotSet![0]!, times.oneShotSet![1]!),
    oneShotNftMs: split(times.oneShotNft![0]!, times.oneShotNft![1]!),
    startMs: median(startTimes),
    floorMs: split(times.floor![0]!, times.floor![1]!),
    sessionFloorMs: split(times.sessionFloor![0]!, times.sessionFloor![1]!),
    updateBytes,
    sessionStarts
  }
  process.stdout.write(JSON.stringify(out) + '\n')
}

/** measureInside runs the worker in the node's namespace and reads its result. */
async function measureInside (n: number, ns: { node: string, mesh: string }, shape: 'peers' | 'group' = 'peers'): Promise<WorkerResult> {
  const r = await host.run(['ip', 'netns', 'exec', ns.node, process.execPath, fileURLToPath(import.meta.url), '--runs', String(RUNS), '--worker', `benchw${n}`, ns.mesh, String(n), shape])
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as WorkerResult
}

type TimedRunner = CommandRunner & { nftMs: number, oneShots: number, sessionStarts: number, lastScript: string }

/**
 * timedRunner adds up the time spent in nft transactions apart from compiling: `nft -f`
 * runs (check and apply) and, in an nft session, the time from writing an update's line to
 * the last line of nft's answer. It counts one-shot element updates and sessions.
 */
function timedRunner (inner: CommandRunner): TimedRunner {
  const r: TimedRunner = {
    nftMs: 0,
    oneShots: 0,
    sessionStarts: 0,
    lastScript: '',
    async run (argv, opts) {
      const t0 = performance.now()
      if (argv.includes('-f')) r.lastScript = opts?.input ?? ''
      else if (argv.includes('-f') && /^(add|delete) element /.test(opts?.input ?? '')) r.oneShots++
      try { return await inner.run(argv, opts) } finally { if (argv.includes('-f')) r.nftMs += ms(t0) }
    }
  }
  if (inner.open !== undefined) {
    const open = inner.open
    r.open = async (argv, opts) => {
      const s = await open(argv, opts)
      r.sessionStarts++
      let sentAt: number | undefined
      const timed = Object.create(s) as CommandSession
      timed.write = text => { sentAt = performance.now(); return s.write(text) }
      timed.onLine = listener => s.onLine((line, stream) => {
        // nft's answer ends with the marker's line of carets: the update is done
        if (sentAt !== undefined && /^\s*\^+\s*$/.test(line)) { r.nftMs += ms(sentAt); sentAt = undefined }
        listener(line, stream)
      })
      return timed
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
  await runner.run(['nft', 'delete', 'table', 'inet', tableName])
  const inside = await measureInside(n, ns)
  return { peers: n, elements, scriptBytes, compileMs: median(compileTimes), applyMs: median(applyTimes), updateBytes: inside.updateBytes, rebuildMs: median(rebuildTimes), listMs: median(listTimes), inside }
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
const loadAtStart = loadavg()
const results: SizeResult[] = []
let lookup: Array<{ name: string, pps: number }> = []
const GROUP = 10000
let groupResult: WorkerResult | undefined
await withNamespaces(async ns => {
  for (const n of SIZES) {
    results.push(await measureSize(n, ns))
    process.stderr.write(`measured ${n} peers\n`)
  }
  groupResult = await measureInside(GROUP, ns, 'group')
})
lookup = await measureLookup()

const jl = (x: Split): string => `${fmt(x.join)} / ${fmt(x.leave)}`
const sizeTable = printTable(
  ['peers', 'elements', 'script bytes', 'compile ms', 'atomic apply ms', 'one-peer update: set() ms, join / leave', 'update bytes', 'baseline: rebuild ms', 'baseline: nft list ms'],
  results.map(r => [r.peers.toLocaleString('en-US'), String(r.elements), r.scriptBytes.toLocaleString('en-US'), fmt(r.compileMs), fmt(r.applyMs), jl(r.inside.setMs), String(r.updateBytes), fmt(r.rebuildMs), fmt(r.listMs)]))
const updateTable = printTable(
  ['peers', 'set() ms, join / leave', 'set() ms, both', 'of which nft ms, join / leave', 'of which JS ms, join / leave', 'one-shot nft -f: set() ms, join / leave', 'of which nft ms, join / leave'],
  results.map(r => [r.peers.toLocaleString('en-US'), jl(r.inside.setMs), fmt(r.inside.setMs.all), jl(r.inside.nftMs), jl(r.inside.jsMs), jl(r.inside.oneShotSetMs), jl(r.inside.oneShotNftMs)]))
const groupRow = (r: WorkerResult): string[] => [`one rule, ${GROUP.toLocaleString('en-US')} members`, jl(r.setMs), fmt(r.setMs.all), jl(r.nftMs), jl(r.jsMs), jl(r.oneShotSetMs), jl(r.oneShotNftMs)]
const groupTable = printTable(
  ['filter', 'set() ms, join / leave', 'set() ms, both', 'of which nft ms, join / leave', 'of which JS ms, join / leave', 'one-shot nft -f: set() ms, join / leave', 'of which nft ms, join / leave'],
  [groupRow(groupResult!)])
const floorTable = printTable(
  ['peers (same run)', 'nft start (nft --version) ms', 'floor, nft -f: 1 element, tiny table ms, add / delete', 'floor, session: the same ms, add / delete', 'nft sessions started'],
  results.map(r => [r.peers.toLocaleString('en-US'), fmt(r.inside.startMs), jl(r.inside.floorMs), jl(r.inside.sessionFloorMs), String(r.inside.sessionStarts)]))
const base = lookup[0]?.pps ?? NaN
const lookupTable = printTable(['ruleset', 'UDP packets/s received', 'ratio to no table'],
  lookup.map(l => [l.name, Math.round(l.pps).toLocaleString('en-US'), (l.pps / base).toFixed(2)]))
const last = results[results.length - 1]!
const load = (l: number[]): string => l.map(x => x.toFixed(1)).join(' ')
const summary = `One-peer update at ${last.peers.toLocaleString('en-US')} peers, timed inside the namespace as the daemon runs: ` +
  `${fmt(last.inside.setMs.join)} ms for the whole \`set\` when a peer joins and ${fmt(last.inside.setMs.leave)} ms when one leaves (target < 20 ms for both; ` +
  `compiling the whole filter once took ${fmt(last.compileMs)} ms in this run). Of that, the nft sessions (check, then apply) take ${jl(last.inside.nftMs)} ms and the compile, diff and render ${jl(last.inside.jsMs)} ms. ` +
  `The same updates as \`nft --check -f\` then \`nft -f\` each took ${jl(last.inside.oneShotSetMs)} ms (nft ${jl(last.inside.oneShotNftMs)} ms), ` +
  `so the sessions are ${(last.inside.oneShotSetMs.join / last.inside.setMs.join).toFixed(1)}x / ${(last.inside.oneShotSetMs.leave / last.inside.setMs.leave).toFixed(1)}x faster for a join / leave. ` +
  `One member joining or leaving a group rule of ${GROUP.toLocaleString('en-US')} members: ${jl(groupResult!.setMs)} ms. ` +
  `Load average at the start and the end of the run: ${load(loadAtStart)}, ${load(loadavg())} (2 cores, shared).`
const body = `Command: \`npx tsc -b bench && node bench/dist/src/nft-bench.js --runs ${RUNS} --write\` (root), ${started.toISOString().slice(0, 10)}.
Each peer has an IPv4 and an IPv6 address allowed on TCP 22, TCP/UDP 443 and two ports of its
own (no elements merge). Single addresses with single ports go to hash sets. Times are medians
of ${RUNS} runs, wall clock:
- compile: FilterRule[] to set elements (pure JS, the whole filter; parsed sources are kept
  between compiles, as in the daemon, where nearly all of them repeat);
- atomic apply: a first \`set\` (read-back, compile, \`nft --check\`, one whole-table transaction);
- one-peer update, set(): one peer joins (element adds) or leaves (element deletes); the
  daemon's whole \`set\` (compile against the previous compile, diff, the element diff as one
  line to a long-lived \`nft --check -i\`, then to a long-lived \`nft -i\` that applies it as one
  transaction, each followed by the marker that tells its end), timed in a worker started inside the namespace, so \`nft\` runs directly as
  in the daemon; the filter is a fresh copy each time, as if parsed from the map;
- baselines: the same one-peer change done as a whole-table rebuild (check + apply, as Warren
  rebuilds), and \`nft list table\` (both through \`ip netns exec\`).

${sizeTable}

Where a one-peer update's time goes (inside the namespace): the nft sessions (from writing the
update's line to the end of nft's answer to the marker after it, the check's and the apply's
together; the check is most of it, as the kernel's abort of a checked batch waits for an RCU
grace period), the JS around it (compile against the previous compile, diff, render); and, for
comparison, the same \`set\` through a runner that cannot open sessions, so each update is
\`nft --check -f -\` then \`nft -f -\` (as before the sessions).
The two firewalls take turns on the one table, a join and a leave each, in every run; the
one-shot pair starts 100 ms after the session's leave. Without that pause its join measured
about 20 ms more at 100 peers: the first nft process to close its netlink socket after a
delete waits for the grace period, even when the delete was another's (the session's).

${updateTable}

A filter of one rule that holds many sources: the ${GROUP.toLocaleString('en-US')} members of a group (an
IPv4 and an IPv6 address each, ${(2 * GROUP).toLocaleString('en-US')} elements) may reach TCP 22. One member joins (listed in the
middle of the member list) or leaves: the rule's sources change, and the compile looks
only at the sources that did (the two lists are walked side by side), not at every member.

${groupTable}

Floors from the same run: starting nft, and one element added to and deleted from a tiny
table, as one \`nft -f -\` and through a session. The last column counts the nft sessions the
daemon's firewall started over all its updates (2, one checking and one applying: none broke).

${floorTable}

The machine's load moves these figures by up to 2x between runs, so compare columns of one run.

${summary}

Why a session, and why a leave cost more than a join with \`nft -f\`: after a transaction that
deletes elements, the kernel frees them once an RCU grace period has passed, and when nft
closes its netlink socket at exit, the kernel first waits for that freeing to finish. strace -T
of nft 1.0.6 on this kernel (6.18): \`close\` of the netlink socket blocked 8.3, 9.9 and 9.9 ms
after a one-element delete from a tiny table, 0.03 ms after an add, and 10.6 to 18.8 ms after
deleting a peer's elements from the 10,000-peer table on the loaded machine. Every \`nft\`
process pays it once, whatever the table's size. A long-lived \`nft -i\` keeps its socket open,
so it pays neither that wait nor the process start; its cache does not make it slower with a
larger table (compare the nft column across sizes). Before the session (2026-12-02, load about
3, 10,000 peers): set() 10.2 ms for a join and 25.2 ms for a leave, of which nft 6.40 / 21.5 ms.
Earlier (2026-11-24) element updates ran \`nft --check\` first and the compile was not
incremental: 107 ms for both.

Per-packet cost of the set lookups: 64-byte UDP (iperf3 -u -b 0 -l 64, 2 s) from one allowed
peer across a veth into the node's namespace, packets received per second, median of 5 interleaved rounds. Every
packet is in the original direction, so each one goes through the set lookups (and, being an
allowed datagram, refreshes its entry in the table's flow-state set). In the "ranges" rows every peer has a
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
