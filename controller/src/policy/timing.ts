/**
 * timing is a quick sanity check of the compiler's speed at the scale target (10,000
 * nodes, 1,000 rules), printed, never asserted; the real benchmarks live in bench/.
 * Run: node controller/dist/src/policy/timing.js
 */
import { performance } from 'node:perf_hooks'
import { createPolicyEngine } from './compile.js'
import { diff } from './explain.js'
import { DEFAULT_POLICY_TEXT, parsePolicy } from './parse.js'
import type { PolicyNode, PolicyUser } from './types.js'

const GROUPS = 100
const USERS = 1000
const SERVERS = 100
const NODES = 10_000

/** ms shows wall time and this process's CPU time, since a busy machine inflates wall time. */
function ms (start: { wall: number, cpu: NodeJS.CpuUsage }): string {
  const cpu = process.cpuUsage(start.cpu)
  return `${(performance.now() - start.wall).toFixed(1)} ms (cpu ${((cpu.user + cpu.system) / 1000).toFixed(1)} ms)`
}
const now = (): { wall: number, cpu: NodeJS.CpuUsage } => ({ wall: performance.now(), cpu: process.cpuUsage() })

function nodeAt (i: number, shifted = false): PolicyNode {
  const n = shifted ? i + 20_000 : i + 1
  const ipv4 = `100.64.${n >> 8}.${n & 255}`
  const ipv6 = `fd7a:115c:a1e0::${n.toString(16)}`
  if (i < SERVERS) return { id: `n${i}`, name: `server-${i}`, tags: [`tag:s${i}`], ipv4, ipv6 }
  return { id: `n${i}`, name: `node-${i}`, user: `u${i % USERS}`, tags: [], ipv4, ipv6 }
}

function groupPolicy (): string {
  const groups: Record<string, string[]> = {}
  for (let u = 0; u < USERS; u++) (groups[`group:g${u % GROUPS}`] ??= []).push(`u${u}@`)
  const tagOwners = Object.fromEntries(Array.from({ length: SERVERS }, (_, s) => [`tag:s${s}`, []]))
  const acls: unknown[] = [{ action: 'accept', src: ['autogroup:member'], dst: ['autogroup:self:22'], proto: 'tcp' }]
  for (let g = 0; g < GROUPS; g++) acls.push({ action: 'accept', src: [`group:g${g}`], dst: [`group:g${g}:*`] })
  for (let g = 0; g < GROUPS; g++) acls.push({ action: 'accept', src: [`group:g${g}`], dst: [`tag:s${g % 10}:443`] })
  for (let i = acls.length; i < 1000; i++) acls.push({ action: 'accept', src: [`group:g${i % GROUPS}`], dst: [`tag:s${i % SERVERS}:${1000 + i}`], proto: 'tcp' })
  return JSON.stringify({ groups, tagOwners, acls }, null, 2)
}

function run (name: string, text: string, users: PolicyUser[]): void {
  let t = now()
  const parsed = parsePolicy(text, { users })
  if (parsed.policy === undefined) throw new Error(parsed.errors.map(e => e.message).join('\n'))
  console.log(`${name}: parse ${parsed.policy.acls.length} rules: ${ms(t)}`)
  const nodes = Array.from({ length: NODES }, (_, i) => nodeAt(i))
  t = now()
  const engine = createPolicyEngine(parsed.policy, users)
  engine.setNodes(nodes)
  console.log(`${name}: index ${NODES} nodes: ${ms(t)}`)
  t = now()
  let filterEntries = 0
  let peerCount = 0
  for (const n of nodes) {
    for (const r of engine.filterFor(n.id)) filterEntries += r.srcs.length
    peerCount += engine.peersOf(n.id).size
  }
  console.log(`${name}: peers and filters of every node: ${ms(t)} (${peerCount} peer pairs, ${filterEntries} filter sources)`)
  const one = (label: string, f: () => Set<string>): void => {
    const start = now()
    const changed = f()
    console.log(`${name}: ${label}: ${ms(start)}, ${changed.size} nodes affected`)
  }
  one('new node joins', () => engine.upsertNode({ ...nodeAt(5000), id: 'new', name: 'new', ipv4: '100.127.0.1', ipv6: 'fd7a:115c:a1e0::ffff' }))
  one('node changes address', () => engine.upsertNode(nodeAt(5001, true)))
  one('node is retagged', () => engine.upsertNode({ ...nodeAt(5002), tags: ['tag:s3'] }))
  one('node leaves', () => engine.removeNode('n5003'))
  one('server leaves', () => engine.removeNode('n3'))
  if (parsed.policy.acls.length > 1) {
    const fewer = parsePolicy(text.replace(/\{\s*"action": "accept",\s*"src": \[\s*"group:g1"\s*\],\s*"dst": \[\s*"group:g1:\*"\s*\]\s*\},/, ''), { users }).policy!
    const start = now()
    const d = diff(parsed.policy, fewer, nodes, users)
    console.log(`${name}: diff after removing one rule: ${ms(start)}, ${d.lost.length} lost, ${d.gained.length} gained`)
  }
}

const users: PolicyUser[] = Array.from({ length: USERS }, (_, u) => ({ name: `u${u}` }))
run('groups (1,000 rules)', groupPolicy(), users)
run('allow-all', DEFAULT_POLICY_TEXT, users)
