/**
 * policy-bench measures the policy compiler at the scale target: 10,000 nodes and 1,000
 * rules (100 groups of 100 users' nodes, 100 tagged servers). It reports the full compile
 * (parse, index, every node's peers and inbound filter) and the cost of one node's change
 * (join, leave, retag, a server leaving) on the incremental path, with the number of nodes
 * it affects. The baseline, measured in the same run for the same change, is what a
 * compiler without the incremental path does: compile everything again and compare every
 * node's result to find whom to tell. The ratio is the point.
 *
 * With --posture every rule asks its sources for a device posture (defaultSrcPosture), every
 * node meets it, one more change is a node that stops meeting it, and the full compile of
 * the same mesh without postures is measured in the same run, for their cost.
 *
 * Run: npx tsc -b bench && node bench/dist/src/policy-bench.js [--runs 5] [--nodes 10000] [--posture] [--write]
 * (--write replaces the `## Policy compiler` section of bench/RESULTS.md, or with --posture its own)
 */
import { loadavg } from 'node:os'
import { performance } from 'node:perf_hooks'
import { loadPolicyModule, type FilterRuleLike, type PolicyEngine, type PolicyNode } from './policy-module.js'
import { argValue, median, printTable, writeResults } from './report.js'

const { parsePolicy, createPolicyEngine } = await loadPolicyModule()

const RUNS = Number(argValue('--runs', '5'))
const NODES = Number(argValue('--nodes', '10000'))
const RULES = 1000
const GROUPS = 100
const USERS = 1000
const SERVERS = 100
const POSTURE = process.argv.includes('--posture')
/** ATTRS: what every node reports with --posture; it meets posture:latest */
const ATTRS = { 'node:os': 'linux', 'node:tsVersion': '1.42.0' }

const users = Array.from({ length: USERS }, (_, u) => ({ name: `u${u}` }))

/** policyText: each group reaches itself on every port and 10 shared servers on 443; the rest are per-port server rules. */
function policyText (postures = POSTURE): string {
  const groups: Record<string, string[]> = {}
  for (let u = 0; u < USERS; u++) (groups[`group:g${u % GROUPS}`] ??= []).push(`u${u}@`)
  const tagOwners = Object.fromEntries(Array.from({ length: SERVERS }, (_, s) => [`tag:s${s}`, []]))
  const acls: unknown[] = [{ action: 'accept', src: ['autogroup:member'], dst: ['autogroup:self:22'], proto: 'tcp' }]
  for (let g = 0; g < GROUPS; g++) acls.push({ action: 'accept', src: [`group:g${g}`], dst: [`group:g${g}:*`] })
  for (let g = 0; g < GROUPS; g++) acls.push({ action: 'accept', src: [`group:g${g}`], dst: [`tag:s${g % 10}:443`] })
  for (let i = acls.length; i < RULES; i++) acls.push({ action: 'accept', src: [`group:g${i % GROUPS}`], dst: [`tag:s${i % SERVERS}:${1000 + i}`], proto: 'tcp' })
  const posture = postures ? { postures: { 'posture:latest': ["node:os == 'linux'", "node:tsVersion >= '1.40'"] }, defaultSrcPosture: ['posture:latest'] } : {}
  return JSON.stringify({ groups, tagOwners, ...posture, acls }, null, 2)
}

function nodeAt (i: number, postures = POSTURE): PolicyNode {
  const n = plainNodeAt(i)
  return postures ? { ...n, postureAttrs: ATTRS } : n
}

function plainNodeAt (i: number): PolicyNode {
  const n = i + 1
  const ipv4 = `100.64.${n >> 8}.${n & 255}`
  const ipv6 = `fd7a:115c:a1e0::${n.toString(16)}`
  if (i < SERVERS) return { id: `n${i}`, name: `server-${i}`, tags: [`tag:s${i}`], ipv4, ipv6 }
  return { id: `n${i}`, name: `node-${i}`, user: `u${i % USERS}`, tags: [], ipv4, ipv6 }
}

/** Result is every node's peers and filter, as the map server needs them. */
type Result = Map<string, { peers: ReadonlySet<string>, filter: FilterRuleLike[] }>

function resultOf (engine: PolicyEngine, nodes: readonly PolicyNode[]): Result {
  const out: Result = new Map()
  for (const n of nodes) out.set(n.id, { peers: engine.peersOf(n.id), filter: engine.filterFor(n.id) })
  return out
}

/** compileAll is the full compile: parse, index the nodes, every node's peers and filter. */
function compileAll (text: string, nodes: readonly PolicyNode[]): { engine: PolicyEngine, result: Result } {
  const parsed = parsePolicy(text, { users })
  if (parsed.policy === undefined) throw new Error(parsed.errors.map(e => e.message).join('\n'))
  const engine = createPolicyEngine(parsed.policy, users)
  engine.setNodes(nodes)
  return { engine, result: resultOf(engine, nodes) }
}

const sameSet = (a: ReadonlySet<string>, b: ReadonlySet<string>): boolean => a.size === b.size && [...a].every(x => b.has(x))

/** changedNodes compares two full results the way a non-incremental compiler finds whom to tell (a removed node is told nothing). */
function changedNodes (before: Result, after: Result): Set<string> {
  const out = new Set<string>()
  for (const [id, a] of after) {
    const b = before.get(id)
    if (b === undefined || !sameSet(a.peers, b.peers) || JSON.stringify(a.filter) !== JSON.stringify(b.filter)) out.add(id)
  }
  return out
}

const timed = <T>(f: () => T): [T, number] => {
  const start = performance.now()
  const v = f()
  return [v, performance.now() - start]
}

/** A Change is one node event: how it alters the node list, and how to apply and undo it on an engine. */
interface Change {
  name: string
  nodes: (all: PolicyNode[]) => PolicyNode[]
  apply: (e: PolicyEngine) => Set<string>
  undo: (e: PolicyEngine) => void
}

const member = nodeAt(5002)
const server = nodeAt(3)
const retagged: PolicyNode = { id: member.id, name: member.name, tags: ['tag:s3'], ipv4: member.ipv4, ipv6: member.ipv6 }
const joiner: PolicyNode = { ...nodeAt(5000), id: 'new', name: 'new', ipv4: '100.127.0.1', ipv6: 'fd7a:115c:a1e0::ffff' }
const changes: Change[] = [
  { name: 'a user\'s node joins', nodes: all => [...all, joiner], apply: e => e.upsertNode(joiner), undo: e => { e.removeNode(joiner.id) } },
  { name: 'a user\'s node leaves', nodes: all => all.filter(n => n.id !== member.id), apply: e => e.removeNode(member.id), undo: e => { e.upsertNode(member) } },
  { name: 'a user\'s node is retagged (tag:s3)', nodes: all => all.map(n => n.id === member.id ? retagged : n), apply: e => e.upsertNode(retagged), undo: e => { e.upsertNode(member) } },
  { name: 'a shared server leaves', nodes: all => all.filter(n => n.id !== server.id), apply: e => e.removeNode(server.id), undo: e => { e.upsertNode(server) } }
]
const outdated: PolicyNode = { ...member, postureAttrs: { ...ATTRS, 'node:tsVersion': '1.38.0' } }
if (POSTURE) {
  changes.push({ name: 'a user\'s node stops meeting the posture', nodes: all => all.map(n => n.id === member.id ? outdated : n), apply: e => e.upsertNode(outdated), undo: e => { e.upsertNode(member) } })
}

const text = policyText()
const nodes = Array.from({ length: NODES }, (_, i) => nodeAt(i))
const fmt = (ms: number): string => ms < 10 ? ms.toFixed(2) : ms.toFixed(0)

console.log(`policy compiler: ${NODES} nodes, ${RULES} rules${POSTURE ? ' with a device posture' : ''}, ${RUNS} runs each (medians)`)
const compileMs: number[] = []
let base = compileAll(text, nodes)
for (let r = 0; r < RUNS; r++) {
  const [c, ms] = timed(() => compileAll(text, nodes))
  compileMs.push(ms)
  base = c
}
let pairs = 0
for (const v of base.result.values()) pairs += v.peers.size
const head = ['what', 'nodes affected', 'incremental ms', 'full recompile ms (baseline)', 'ratio']
const rows: string[][] = [['full compile: parse, index, every node\'s peers and filter', `${NODES}`, '-', fmt(median(compileMs)), '-']]
if (POSTURE) {
  const plainText = policyText(false)
  const plainNodes = Array.from({ length: NODES }, (_, i) => nodeAt(i, false))
  const plainMs = Array.from({ length: RUNS }, () => timed(() => compileAll(plainText, plainNodes))[1])
  rows.push(['full compile of the same mesh without postures', `${NODES}`, '-', fmt(median(plainMs)), `postures cost ${(median(compileMs) / median(plainMs)).toFixed(2)}x`])
}

for (const change of changes) {
  const incremental: number[] = []
  const full: number[] = []
  let affected = new Set<string>()
  let fullAffected = new Set<string>()
  for (let r = 0; r < RUNS; r++) {
    // Incremental: the engine's own change, plus the new peers and filter of each affected node (what the map server sends).
    const [n, ms] = timed(() => {
      const ids = change.apply(base.engine)
      for (const id of ids) { base.engine.peersOf(id); base.engine.filterFor(id) }
      return new Set(ids)
    })
    incremental.push(ms)
    affected = n
    change.undo(base.engine)
    // Baseline: compile the changed mesh from scratch and compare every node to find whom to tell.
    const [m, fullMs] = timed(() => changedNodes(base.result, compileAll(text, change.nodes(nodes)).result))
    full.push(fullMs)
    fullAffected = m
  }
  const inc = median(incremental)
  const fl = median(full)
  // Both paths must name the same nodes, or the comparison is not of the same work.
  const agree = sameSet(affected, fullAffected)
  if (!agree) console.error(`${change.name}: the incremental path names ${affected.size} nodes, the full recompile ${fullAffected.size}`)
  rows.push([change.name, agree ? `${affected.size}` : `${affected.size} (full: ${fullAffected.size})`, fmt(inc), fmt(fl), `${Math.round(fl / inc)}x`])
}

const table = printTable(head, rows)
console.log(table)
console.log(`${pairs} peer pairs in the mesh; the incremental cost follows the nodes affected, the baseline the whole mesh.`)

if (process.argv.includes('--write')) {
  const postureNote = POSTURE
    ? `\nEvery rule asks its sources for posture:latest (defaultSrcPosture: node:os == 'linux', node:tsVersion >= '1.40'),
which every node meets; the last row is a node whose reported version falls below it.\n`
    : ''
  writeResults(POSTURE ? 'Policy compiler with device postures' : 'Policy compiler', `Command: \`node bench/dist/src/policy-bench.js --runs ${RUNS}${NODES !== 10000 ? ` --nodes ${NODES}` : ''}${POSTURE ? ' --posture' : ''} --write\`

${NODES} nodes (100 tagged servers, the rest owned by 1,000 users in 100 groups), ${RULES} rules: each group reaches
itself on every port and 10 shared servers on 443, and per-port rules to the servers. Medians of ${RUNS} runs,
milliseconds of wall time. "Incremental" is the engine's node change plus the new peers and filter of every
affected node; the baseline compiles the changed mesh from scratch and compares every node's result to find
the affected ones, which the incremental path avoids.
${postureNote}
${table}
${pairs} peer pairs in the mesh; load average at the end of the run ${loadavg()[0]!.toFixed(1)} (2 cores).`)
  console.log('wrote the Policy compiler section of bench/RESULTS.md')
}
