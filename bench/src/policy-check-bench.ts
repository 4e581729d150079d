/**
 * policy-check-bench measures what `warren admin policy check` costs the controller for
 * a policy with one big group named by many rules: one group of N users referenced in R
 * rules (35,000 x 400 is the 469 KB policy that once ran the controller out of memory;
 * 10,000 x 200 has a target of < 2 s and < 300 MB). Each run checks the policy the way
 * the API does (parse, resolve against the users, run its tests) in a fresh process, and
 * reports the wall time of the check and the process's peak resident memory. The
 * baseline, measured in the same run the same way, is checking the default allow-all
 * policy against the same users: what any check costs.
 *
 * Run: npx tsc -b bench && node bench/dist/src/policy-check-bench.js [--runs 5] [--heap-mb 2048] [--write]
 * (--write replaces the `## Policy check` section of bench/RESULTS.md)
 */
import { loadavg } from 'node:os'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { childArgs, peakRssMb, runChild } from './child-sample.js'
import { argValue, median, printTable, writeResults } from './report.js'

/** The part of the controller's policy module this benchmark drives. */
interface PolicyModule {
  validatePolicy: (text: string, users: Array<{ name: string }>) => { policy?: unknown, errors: Array<{ message: string }> }
  DEFAULT_POLICY_TEXT: string
}

/** PolicyCase is one policy to check: `users` users in one group named by `rules` rules (0: the default policy). */
interface PolicyCase { name: string, users: number, rules: number }

const CASES: PolicyCase[] = [
  { name: 'baseline: default allow-all, 35,000 users', users: 35_000, rules: 0 },
  { name: '10,000 users x 200 rules', users: 10_000, rules: 200 },
  { name: '35,000 users x 400 rules', users: 35_000, rules: 400 }
]

/** bigGroupPolicy: group:big holds every user; each rule lets it reach one tag on one port; a test checks one flow. */
export function bigGroupPolicy (users: number, rules: number): string {
  const members = Array.from({ length: users }, (_, u) => `user${u}@`)
  const tagOwners = Object.fromEntries(Array.from({ length: rules }, (_, r) => [`tag:svc${r}`, ['group:big']]))
  const acls = Array.from({ length: rules }, (_, r) => ({ action: 'accept', src: ['group:big'], dst: [`tag:svc${r}:${1000 + r}`] }))
  const tests = [{ src: 'user0@', accept: ['tag:svc0:1000'], deny: ['tag:svc0:22'] }]
  return JSON.stringify({ groups: { 'group:big': members }, tagOwners, acls, tests })
}

/** Sample is one check in a fresh process: wall time and peak resident memory, or why it failed. */
interface Sample { ms: number, maxRssMb: number, bytes: number, error?: string }

async function child (c: PolicyCase): Promise<void> {
  const { validatePolicy, DEFAULT_POLICY_TEXT } = await import(new URL('./policy/index.js', import.meta.resolve('@warren/controller')).href) as PolicyModule
  const users = Array.from({ length: c.users }, (_, u) => ({ name: `user${u}` }))
  const text = c.rules === 0 ? DEFAULT_POLICY_TEXT : bigGroupPolicy(c.users, c.rules)
  const start = performance.now()
  const result = validatePolicy(text, users)
  const ms = performance.now() - start
  if (result.policy === undefined) throw new Error(result.errors.slice(0, 3).map(e => e.message).join('\n'))
  const sample: Sample = { ms, maxRssMb: peakRssMb(), bytes: text.length }
  process.stdout.write(JSON.stringify(sample))
}

function runOnce (index: number, heapMb: number): Sample {
  const r = runChild<Sample>(fileURLToPath(import.meta.url), [String(index)], heapMb)
  return r.ok ? r.value : { ms: NaN, maxRssMb: NaN, bytes: 0, error: r.error }
}

async function main (): Promise<void> {
  const args = childArgs()
  if (args !== undefined) { await child(CASES[Number(args[0])]!); return }
  const runs = Number(argValue('--runs', '5'))
  const heapMb = Number(argValue('--heap-mb', '2048'))
  const head = ['policy', 'policy bytes', 'check ms (median)', 'peak RSS MB (median)', 'over baseline: ms / MB']
  const rows: string[][] = []
  let base: { ms: number, mb: number } | undefined
  for (const [i, c] of CASES.entries()) {
    const samples: Sample[] = []
    for (let r = 0; r < runs; r++) {
      const s = runOnce(i, heapMb)
      samples.push(s)
      if (s.error !== undefined) break
    }
    const failed = samples.find(s => s.error !== undefined)
    if (failed !== undefined) {
      rows.push([c.name, '-', failed.error!, '-', '-'])
    } else {
      const ms = median(samples.map(s => s.ms))
      const mb = median(samples.map(s => s.maxRssMb))
      base ??= { ms, mb }
      rows.push([c.name, samples[0]!.bytes.toLocaleString('en-US'), ms.toFixed(0), mb.toFixed(0),
        i === 0 ? '-' : `${(ms - base.ms).toFixed(0)} / ${(mb - base.mb).toFixed(0)}`])
    }
    console.error(`${c.name}: done`)
  }
  const table = printTable(head, rows)
  const load = loadavg()[0]!.toFixed(1)
  console.log(table)
  console.log(`load average at the end of the run ${load} (2 cores)`)
  if (process.argv.includes('--write')) {
    writeResults('Policy check', `Command: \`npx tsc -b bench && node bench/dist/src/policy-check-bench.js --runs ${runs} --write\`

What \`warren admin policy check\` costs for one group of N users named by R rules (each rule lets
the group reach its own tag on one port; one test). Each run checks the policy as the API does
(parse, resolve against the N users, run the tests) in a fresh Node process with a
${heapMb} MB heap limit; medians of ${runs} runs. "check ms" is the wall time of the check alone;
"peak RSS" is the process's peak resident memory, Node itself included, so the baseline (the
default allow-all policy against the same users, in the same run) shows what any check costs.
Target for 10,000 x 200: < 2 s and < 300 MB.

${table}
Load average at the end of the run ${load} (2 cores).`)
  }
}

await main()
