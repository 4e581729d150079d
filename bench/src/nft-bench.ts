/**
 * nft-bench measures Warren's nftables enforcement in a fresh network namespace: ruleset
 * size and atomic apply time for 100, 1,000 and 10,000 peers, and the time of a one-peer
 * update at each size (target at 10,000: under 20 ms). Baselines from the same run: the same
 * one-peer change done as a full table rebuild, and `nft list table`. It also measures
 * what a packet pays for the set lookups: UDP packets per second through the table with
 * 100 vs 10,000 peers' elements, against no table.
 *
 * Run: npx tsc -b bench && node bench/dist/src/nft-bench.js [--runs 7] [--write]
 * (root; --write replaces the `## nftables` section of bench/RESULTS.md)
 */
import { readFileSync, writeFileSync, existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { randomBytes } from 'node:crypto'
import { loadavg } from 'node:os'
import { performance } from 'node:perf_hooks'
import type { FilterRule } from '@warren/protocol'

/** FirewallModule is the part of @warren/node's firewall this benchmark drives. */
interface FirewallModule {
  createNftablesFirewall: (init: { runner: Runner, table?: string }) => {
    up: () => Promise<void>
    set: (filter: FilterRule[], ctx: { interfaceName: string }) => Promise<void>
    close: () => Promise<void>
    lastApply: () => { kind: string, elements: number, scriptBytes: number } | undefined
  }
  compileFilter: (filter: FilterRule[]) => Record<string, string[]>
  renderTableScript: (sets: Record<string, string[]>, o: { table: string, interfaceName: string }) => string
}
interface Runner { run: (argv: readonly string[], opts?: { input?: string, allowFail?: boolean }) => Promise<{ stdout: string, stderr: string, exitCode: number }> }
interface RunnerModule { createCommandRunner: (o?: { netns?: string }) => Runner }

// The firewall is not (yet) re-exported from @warren/node's index, so load it from the package's build.
const nodeDist = dirname(fileURLToPath(import.meta.resolve('@warren/node')))
const fwMod = await import(join(nodeDist, 'firewall', 'index.js')) as FirewallModule
const runnerMod = await import(join(nodeDist, 'runner', 'index.js')) as RunnerModule

const argValue = (name: string, dflt: string): string => {
  const i = process.argv.indexOf(name)
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : dflt
}
const RUNS = Number(argValue('--runs', '7'))
const SIZES = [100, 1000, 10000]

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

function table (head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map(r => r[i]!.length)))
  const line = (cells: string[]): string => '| ' + cells.map((c, i) => c.padEnd(w[i]!)).join(' | ') + ' |'
  return [line(head), '| ' + w.map(n => '-'.repeat(n)).join(' | ') + ' |', ...rows.map(line)].join('\n') + '\n'
}

/**
 * peers makes a filter in which each peer (an IPv4 and an IPv6 address) may reach TCP 22,
 * TCP/UDP 443 and a port range of its own, so that no two peers' elements merge.
 */
function peers (n: number, extra = 0): FilterRule[] {
  const out: FilterRule[] = []
  for (let i = 0; i < n + extra; i++) {
    const v4 = `100.64.${(i >> 7) & 255}.${(i & 127) * 2}`
    const v6 = `fd7a:115c:a1e0::${(i * 2).toString(16)}`
    out.push({ srcs: [v4, v6], protos: [6], ports: [{ first: 22, last: 22 }, { first: 10000 + (i % 5000) * 4, last: 10001 + (i % 5000) * 4 }] })
    out.push({ srcs: [v4, v6], protos: [6, 17], ports: [{ first: 443, last: 443 }] })
  }
  return out
}

const host = runnerMod.createCommandRunner()
const ms = (t0: number): number => performance.now() - t0
const fmt = (x: number): string => x < 10 ? x.toFixed(2) : x < 100 ? x.toFixed(1) : x.toFixed(0)

async function withNamespaces<T> (fn: (ns: { node: string, peer: string, mesh: string }) => Promise<T>): Promise<T> {
  const tag = randomBytes(3).toString('hex')
  const ns = { node: `wbn${tag}`, peer: `wbp${tag}`, mesh: `wm${tag}` }
  try {
    await host.run(['ip', 'netns', 'add', ns.node])
    await host.run(['ip', 'netns', 'add', ns.peer])
    await host.run(['ip', 'link', 'add', ns.mesh, 'netns', ns.node, 'type', 'veth', 'peer', 'name', `wa${tag}`, 'netns', ns.peer])
    const inNode = runnerMod.createCommandRunner({ netns: ns.node })
    const inPeer = runnerMod.createCommandRunner({ netns: ns.peer })
    for (const c of [['ip', 'link', 'set', 'lo', 'up'], ['ip', 'link', 'set', ns.mesh, 'up'], ['ip', 'addr', 'add', '100.64.200.1/16', 'dev', ns.mesh]]) await inNode.run(c)
    for (const c of [['ip', 'link', 'set', 'lo', 'up'], ['ip', 'link', 'set', `wa${tag}`, 'up'], ['ip', 'addr', 'add', '100.64.0.0/16', 'dev', `wa${tag}`]]) await inPeer.run(c)
    return await fn(ns)
  } finally {
    await host.run(['ip', 'netns', 'del', ns.node], { allowFail: true })
    await host.run(['ip', 'netns', 'del', ns.peer], { allowFail: true })
  }
}

interface SizeResult { peers: number, elements: number, scriptBytes: number, compileMs: number, applyMs: number, updateMs: number, updateNftMs: number, updateBytes: number, rebuildMs: number, listMs: number }

/** timedRunner adds up the time spent in `nft` transactions (check and apply), apart from compiling. */
function timedRunner (inner: Runner): Runner & { nftMs: number } {
  const r = {
    nftMs: 0,
    async run (argv: readonly string[], opts?: { input?: string, allowFail?: boolean }) {
      const t0 = performance.now()
      try { return await inner.run(argv, opts) } finally { if (argv.includes('-f')) r.nftMs += ms(t0) }
    }
  }
  return r
}

async function measureSize (n: number, ns: { node: string, mesh: string }): Promise<SizeResult> {
  const runner = timedRunner(runnerMod.createCommandRunner({ netns: ns.node }))
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
    const fw = fwMod.createNftablesFirewall({ runner, table: tableName })
    let t0 = performance.now()
    fwMod.compileFilter(base)
    compileTimes.push(ms(t0))
    t0 = performance.now()
    await fw.set(base, ctx)
    applyTimes.push(ms(t0))
    elements = fw.lastApply()!.elements
    scriptBytes = fw.lastApply()!.scriptBytes
  }
  const fw = fwMod.createNftablesFirewall({ runner, table: tableName })
  await fw.set(base, ctx)
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
    }
  }
  // Baseline: the same one-peer change as a whole-table rebuild (check + apply, as Warren would).
  const rebuildTimes: number[] = []
  for (let r = 0; r < RUNS; r++) {
    const script = fwMod.renderTableScript(fwMod.compileFilter(r % 2 === 0 ? plusOne : base), { table: tableName, interfaceName: ns.mesh })
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
  await fw.close()
  return { peers: n, elements, scriptBytes, compileMs: median(compileTimes), applyMs: median(applyTimes), updateMs: median(updateTimes), updateNftMs: median(updateNftTimes), updateBytes, rebuildMs: median(rebuildTimes), listMs: median(listTimes) }
}

/**
 * measureLookup floods 64-byte UDP (iperf3) from an allowed peer through the mesh interface
 * and counts what the node receives: the per-packet cost of the ruleset shows as a lower rate.
 */
async function measureLookup (ns: { node: string, peer: string, mesh: string }): Promise<Array<{ name: string, pps: number }>> {
  const runner = runnerMod.createCommandRunner({ netns: ns.node })
  const inPeer = runnerMod.createCommandRunner({ netns: ns.peer })
  const out: Array<{ name: string, pps: number }> = []
  const allowSink: FilterRule = { srcs: ['100.64.0.0'], protos: [6, 17], ports: [{ first: 5201, last: 5201 }] }
  const cases: Array<{ name: string, filter?: FilterRule[] }> = [
    { name: 'no table' },
    { name: '100 peers', filter: [...peers(100), allowSink] },
    { name: '10,000 peers', filter: [...peers(10000), allowSink] }
  ]
  for (const c of cases) {
    const fw = fwMod.createNftablesFirewall({ runner, table: 'benchlookup' })
    if (c.filter !== undefined) await fw.set(c.filter, { interfaceName: ns.mesh })
    const rates: number[] = []
    for (let r = 0; r < 3; r++) {
      await runner.run(['iperf3', '-s', '-1', '-D', '-B', '100.64.200.1'])
      const deadline = Date.now() + 5000
      let res = await inPeer.run(['iperf3', '-u', '-b', '0', '-l', '64', '-t', '2', '-c', '100.64.200.1', '-B', '100.64.0.0', '--json'], { allowFail: true })
      while (res.exitCode !== 0 && Date.now() < deadline) { // the server may not listen yet
        await new Promise(resolve => setTimeout(resolve, 50))
        res = await inPeer.run(['iperf3', '-u', '-b', '0', '-l', '64', '-t', '2', '-c', '100.64.200.1', '-B', '100.64.0.0', '--json'], { allowFail: true })
      }
      const sum = (JSON.parse(res.stdout) as { end: { sum: { packets: number, lost_packets: number, seconds: number } } }).end.sum
      rates.push((sum.packets - sum.lost_packets) / sum.seconds)
    }
    out.push({ name: c.name, pps: median(rates) })
    if (c.filter !== undefined) await fw.close()
  }
  return out
}

const started = new Date()
const results: SizeResult[] = []
let lookup: Array<{ name: string, pps: number }> = []
await withNamespaces(async ns => {
  for (const n of SIZES) {
    results.push(await measureSize(n, ns))
    process.stderr.write(`measured ${n} peers\n`)
  }
  lookup = await measureLookup(ns)
})

const sizeTable = table(
  ['peers', 'elements', 'script bytes', 'compile ms', 'atomic apply ms', 'one-peer update: nft ms', 'one-peer update: set() ms', 'update bytes', 'baseline: rebuild ms', 'baseline: nft list ms'],
  results.map(r => [r.peers.toLocaleString('en-US'), String(r.elements), r.scriptBytes.toLocaleString('en-US'), fmt(r.compileMs), fmt(r.applyMs), fmt(r.updateNftMs), fmt(r.updateMs), String(r.updateBytes), fmt(r.rebuildMs), fmt(r.listMs)]))
const base = lookup[0]?.pps ?? NaN
const lookupTable = table(['ruleset', 'UDP packets/s received', 'ratio to no table'],
  lookup.map(l => [l.name, Math.round(l.pps).toLocaleString('en-US'), (l.pps / base).toFixed(2)]))
const last = results[results.length - 1]!
const summary = `One-peer update at ${last.peers.toLocaleString('en-US')} peers: ${fmt(last.updateNftMs)} ms in nft (check + apply; target < 20 ms), ` +
  `${fmt(last.updateMs)} ms for the whole \`set\` including compiling the full filter; ` +
  `the nft part is ${(last.rebuildMs / last.updateNftMs).toFixed(0)}x faster than rebuilding the table for the same change. ` +
  `Load average during the run: ${loadavg().map(x => x.toFixed(1)).join(' ')} (2 cores, shared).`
const body = `Command: \`npx tsc -b bench && node bench/dist/src/nft-bench.js --runs ${RUNS} --write\` (root), ${started.toISOString().slice(0, 10)}.
Each peer has an IPv4 and an IPv6 address allowed on TCP 22, TCP/UDP 443 and a port range of
its own (so no elements merge). Times are medians of ${RUNS} runs and include \`nft --check\`
before every apply; "atomic apply" is a first \`set\` (read-back, check, whole-table transaction),
"one-peer update" a \`set\` that adds or removes one peer (element commands only).

${sizeTable}
${summary}

Per-packet cost of the set lookups: 64-byte UDP (iperf3 -u -b 0 -l 64, 2 s) from one allowed
peer across a veth into the node's namespace, packets received per second, median of 3. Every
packet is in the original direction, so each one goes through the set lookups.

${lookupTable}`

console.log(`\n## nftables\n\n${body}`)

if (process.argv.includes('--write')) {
  const path = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'RESULTS.md')
  const section = `## nftables\n\n${body.trim()}\n`
  let text = existsSync(path) ? readFileSync(path, 'utf8') : '# Benchmark results\n'
  const re = /## nftables\n[\s\S]*?(?=\n## |$)/
  text = re.test(text) ? text.replace(re, section) : text.trimEnd() + '\n\n' + section
  writeFileSync(path, text)
  console.log(`wrote the nftables section of ${path}`)
}
