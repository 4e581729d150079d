/**
 * policy-scale-bench measures the policy engine with one big group: 35,000 users, one
 * node each, plus 100 tagged servers; the users are one group named by 400 rules with
 * varied destinations (the servers' tags, host aliases, CIDRs, autogroup:self) and ports
 * (one port, lists, ranges; tcp, udp or the default protocols), and tests, one of them
 * from the group (it must hold for each of the 35,000 members). A group is compiled once
 * and referenced by its rules, so its size should cost once, not once per rule.
 *
 * Each sample runs in a fresh process, which reports its wall times and its peak resident
 * memory (Node itself included):
 * - check: what `warren admin policy check` does (parse, resolve against the users, run the tests);
 * - compile: the engine for every node (index, every node's inbound filter, the servers' peers),
 *   then a member's node joining and leaving on that engine (the change plus the affected
 *   nodes' new peers and filters, medians of 20).
 * The baseline, in the same run against the same users and nodes, is the default allow-all policy.
 *
 * Run: npx tsc -b bench && node bench/dist/src/policy-scale-bench.js [--runs 3] [--users 35000] [--rules 400] [--heap-mb 2048] [--write]
 * (--write replaces the `## Policy at scale: one big group` section of bench/RESULTS.md)
 */
import { fileURLToPath } from 'node:url'
import { performance } from 'node:perf_hooks'
import { childArgs, peakRssMb, runChild } from './child-sample.js'
import { loadPolicyModule, type PolicyEngine, type PolicyNode } from './policy-module.js'
import { argValue, loadLine, loadNow, median, printTable, publish } from './report.js'

const SERVERS = 100
/** COUNT_ROW is the row of the table that counts nodes rather than measures a cost. */
const COUNT_ROW = 5
const HOSTS = 20
const CHANGES = 20

/** bigGroupPolicy: group:staff holds every user and is the source of every rule but the first (autogroup:self). */
function bigGroupPolicy (users: number, rules: number): string {
  const staff = Array.from({ length: users }, (_, u) => `user${u}@`)
  const tagOwners = Object.fromEntries(Array.from({ length: SERVERS }, (_, s) => [`tag:svc${s}`, ['group:staff']]))
  const hosts = Object.fromEntries(Array.from({ length: HOSTS }, (_, h) => [`lan${h}`, `10.1.${h}.0/24`]))
  const acls: unknown[] = [{ action: 'accept', src: ['autogroup:member'], dst: ['autogroup:self:*'] }]
  for (let r = 1; r < rules; r++) {
    const tag = `tag:svc${r % SERVERS}`
    const rule = [
      { dst: [`${tag}:${1000 + r}`], proto: 'tcp' },
      { dst: [`${tag}:${20000 + r},${30000 + r}`], proto: 'udp' },
      { dst: [`${tag}:${40000 + r}-${40010 + r}`, `tag:svc${(r + 1) % SERVERS}:443`] },
      { dst: [`lan${r % HOSTS}:${r}`] },
      { dst: [`10.2.${r % 256}.0/24:80,443`], proto: 'tcp' }
    ][r % 5]!
    acls.push({ action: 'accept', src: ['group:staff'], ...rule })
  }
  const tests = [
    { src: 'user0@', accept: ['tag:svc5:1005'], deny: ['tag:svc5:22'] },
    { src: 'group:staff', accept: ['tag:svc10:1010', '10.1.3.7:3'], deny: ['tag:svc10:22'] }
  ]
  return JSON.stringify({ groups: { 'group:staff': staff }, tagOwners, hosts, acls, tests })
}

/** nodeAt: the first SERVERS nodes are tagged servers, the rest belong to one user each. */
function nodeAt (i: number): PolicyNode {
  const n = i + 1
  const ipv4 = `100.${64 + (n >> 16)}.${(n >> 8) & 255}.${n & 255}`
  const ipv6 = `fd7a:115c:a1e0::${n.toString(16)}`
  if (i < SERVERS) return { id: `n${i}`, name: `server-${i}`, tags: [`tag:svc${i}`], ipv4, ipv6 }
  return { id: `n${i}`, name: `node-${i}`, user: `user${i - SERVERS}`, tags: [], ipv4, ipv6 }
}

/** CheckSample: one check's wall time and the process's peak RSS. */
interface CheckSample { ms: number, mb: number, bytes: number }
/** EngineSample: the compile's wall time, medians of a join and a leave, nodes they affect, peak RSS. */
interface EngineSample { compileMs: number, joinMs: number, leaveMs: number, joinAffected: number, mb: number }

function timed (f: () => void): number {
  const start = performance.now()
  f()
  return performance.now() - start
}

async function child ([phase, kind, usersArg, rulesArg]: string[]): Promise<void> {
  const mod = await loadPolicyModule()
  const userCount = Number(usersArg)
  const users = Array.from({ length: userCount }, (_, u) => ({ name: `user${u}` }))
  const text = kind === 'baseline' ? mod.DEFAULT_POLICY_TEXT : bigGroupPolicy(userCount, Number(rulesArg))
  let policy: unknown
  const checkMs = timed(() => {
    const result = mod.validatePolicy(text, users)
    if (result.policy === undefined) throw new Error(result.errors.slice(0, 3).map(e => e.message).join('\n'))
    policy = result.policy
  })
  if (phase === 'check') {
    const sample: CheckSample = { ms: checkMs, mb: peakRssMb(), bytes: text.length }
    process.stdout.write(JSON.stringify(sample))
    return
  }
  const nodes = Array.from({ length: SERVERS + userCount }, (_, i) => nodeAt(i))
  let engine: PolicyEngine | undefined
  const compileMs = timed(() => {
    engine = mod.createPolicyEngine(policy, users)
    engine.setNodes(nodes)
    for (const n of nodes) engine.filterFor(n.id)
    for (let s = 0; s < SERVERS; s++) engine.peersOf(nodes[s]!.id)
  })
  const e = engine!
  // a member's node joins and leaves; what the map service then asks for each affected node
  const joiner: PolicyNode = { ...nodeAt(SERVERS + 7), id: 'joiner', name: 'joiner', ipv4: '100.127.255.1', ipv6: 'fd7a:115c:a1e0::ffff:1' }
  const affectedThen = (ids: Set<string>): void => { for (const id of ids) { e.peersOf(id); e.filterFor(id) } }
  const join: number[] = []
  const leave: number[] = []
  let joinAffected = 0
  for (let c = 0; c < CHANGES; c++) {
    join.push(timed(() => { const ids = e.upsertNode(joiner); joinAffected = ids.size; affectedThen(ids) }))
    leave.push(timed(() => affectedThen(e.removeNode(joiner.id))))
  }
  const sample: EngineSample = { compileMs, joinMs: median(join), leaveMs: median(leave), joinAffected, mb: peakRssMb() }
  process.stdout.write(JSON.stringify(sample))
}

/** measure takes `runs` samples of one phase and policy; the first failure ends it. */
function measure<T> (phase: string, kind: string, users: number, rules: number, runs: number, heapMb: number): T[] | string {
  const out: T[] = []
  for (let r = 0; r < runs; r++) {
    const s = runChild<T>(fileURLToPath(import.meta.url), [phase, kind, String(users), String(rules)], heapMb)
    if (!s.ok) return s.error
    out.push(s.value)
  }
  return out
}

async function main (): Promise<void> {
  const args = childArgs()
  if (args !== undefined) { await child(args); return }
  const runs = Number(argValue('--runs', '3'))
  const users = Number(argValue('--users', '35000'))
  const rules = Number(argValue('--rules', '400'))
  const heapMb = Number(argValue('--heap-mb', '2048'))
  const loadStart = loadNow()
  const columns: Array<Array<number | string>> = []
  let bytes = 0
  for (const kind of ['baseline', 'group']) {
    const checks = measure<CheckSample>('check', kind, users, rules, runs, heapMb)
    const engines = measure<EngineSample>('engine', kind, users, rules, runs, heapMb)
    const pick = <T>(xs: T[] | string, f: (x: T) => number): number | string => typeof xs === 'string' ? xs : median(xs.map(f))
    if (kind === 'group' && typeof checks !== 'string') bytes = checks[0]!.bytes
    columns.push([pick(checks, s => s.ms), pick(checks, s => s.mb), pick(engines, s => s.compileMs),
      pick(engines, s => s.joinMs), pick(engines, s => s.leaveMs), pick(engines, s => s.joinAffected), pick(engines, s => s.mb)])
    console.error(`${kind}: done`)
  }
  const names = ['check: parse, resolve, run the tests (ms)', 'check: peak RSS (MB)', 'compile: every node\'s filter, the servers\' peers (ms)',
    'a member\'s node joins (ms)', 'a member\'s node leaves (ms)', 'nodes a join affects', 'compile and changes: peak RSS (MB)']
  const fmt = (x: number | string): string => typeof x === 'string' ? x : x < 10 ? x.toFixed(2) : x.toFixed(0)
  const ratio = (a: number | string, b: number | string): string => typeof a === 'string' || typeof b === 'string' ? '-' : (b / a).toFixed(2)
  // a count of nodes is no cost: its ratio would say nothing
  const rows = names.map((name, i) => [name, fmt(columns[0]![i]!), fmt(columns[1]![i]!), i === COUNT_ROW ? '-' : ratio(columns[0]![i]!, columns[1]![i]!)])
  const table = printTable(['what (medians)', 'baseline: default allow-all', `one group of ${users.toLocaleString('en-US')} in ${rules} rules`, 'ratio'], rows)
  const command = `node bench/dist/src/policy-scale-bench.js --runs ${runs} --write`
  const about = `${users.toLocaleString('en-US')} users with one node each and ${SERVERS} tagged servers; the users are one group
(group:staff, a ${bytes.toLocaleString('en-US')}-byte policy) named by ${rules} rules with varied destinations (the servers' tags, ${HOSTS} host aliases,
CIDRs, autogroup:self) and ports (one, lists, ranges; tcp, udp, default), and two tests, one from the group (it
must hold for each member). Every sample is a fresh process with a ${heapMb} MB heap limit; medians of ${runs} runs. The
baseline is the default allow-all policy against the same users and nodes, in the same run. Targets for the group
policy: check < 2 s and < 300 MB.`
  publish('Policy at scale: one big group', command, about, table, loadLine(loadStart, loadNow()))
}

await main()
