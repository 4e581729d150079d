/**
 * path-bench measures path switching and joining with a real controller (embedded kernel UDP
 * relay) and real daemons in the NAT lab, in one run:
 * - a 100/s ping (`ping -i 0.01`) between two nodes behind cone NATs across a switch, both
 *   ways: the direct path cut while pinging (the core drops UDP between the two NATs' public
 *   addresses; the relay, on the backbone, is untouched) until both nodes use the UDP relay
 *   and it carries the ping; then the cut removed while pinging until both nodes use the
 *   direct path again, once at once (within the probe burst after the fallback) and once
 *   after `--relayed-s` on the relay (the periodic retry). It reports the packets sent and
 *   lost around each switch and in each ping run, the longest silence, and how long the
 *   switch took;
 * - the time from `warren up` (after `warren down`) to the first ping reply, cone/cone
 *   (direct) and symmetric/cone (relayed), and the path the node used at that reply.
 * Needs root, wg, wireguard-go (or kernel WireGuard), nft, ping.
 *
 *   node bench/dist/src/path-bench.js [--rounds 5] [--up-rounds 5] [--relayed-s 10] [--write]
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import {
  createMesh, createNatLab, createTeardownScope, cutDirectPath, netnsSkipReason, peerOf, waitFor, waitForPath,
  type Host, type Mesh, type MeshNode, type NatKind, type NatLab, type PathKind
} from '@warren/test'
import { median, printTable, writeResults, argValue, loadNow, loadLine } from './report.js'
import { upToPing, type UpTiming } from './up-timing.js'

const rounds = Number(argValue('--rounds', '5'))
const upRounds = Number(argValue('--up-rounds', '5'))
const relayedMs = Number(argValue('--relayed-s', '10')) * 1000
const command = `node bench/dist/src/path-bench.js --rounds ${rounds} --up-rounds ${upRounds} --relayed-s ${relayedMs / 1000}${process.argv.includes('--write') ? ' --write' : ''}`

/** The goals of issue 9 (path selection). */
const MAX_UPGRADE_LOSS_PCT = 1
const MAX_FALLBACK_MS = 6000
/** after a switch, the ping goes on this long (losses right after a switch count) */
const SETTLE_MS = 2000
/** how long each echo of the join timing's ping loop waits for its reply (replies in the lab take a few ms) */
const ECHO_WAIT_S = 0.1
/** ping interval: 100 per second */
const PING_INTERVAL = '0.01'

const POLICY = `{
  "tagOwners": { "tag:n": ["bench@"] },
  "acls": [ { "action": "accept", "src": ["tag:n"], "dst": ["tag:n:*"], "proto": "icmp" } ]
}
`

const scope = createTeardownScope(console.error)
process.on('SIGINT', () => { scope.fail(); void scope.cleanup().then(() => process.exit(130)) })

/** Reply is one echo reply: when it arrived (ms, wall clock) and its sequence number, unwrapped. */
interface Reply { at: number, seq: number }

/** replies parses `ping -D -n` output; sequence numbers are unwrapped past 65535. */
function replies (output: string): Reply[] {
  const out: Reply[] = []
  let base = 0
  let last = -1
  for (const m of output.matchAll(/^\[(\d+\.\d+)\] \d+ bytes from \S+ icmp_seq=(\d+)/gm)) {
    const raw = Number(m[2])
    if (last >= 0 && raw + base < last - 30_000) base += 65536
    const seq = raw + base
    last = seq
    out.push({ at: Number(m[1]) * 1000, seq })
  }
  return out
}

/** PingRun is what one ping run saw. */
interface PingRun {
  /** echo requests from the first answered one to the last answered one */
  sent: number
  lost: number
  /** the longest time between two consecutive replies, ms */
  maxGapMs: number
  all: Reply[]
}

function summarize (all: Reply[]): PingRun {
  if (all.length === 0) return { sent: 0, lost: 0, maxGapMs: NaN, all }
  const seqs = new Set(all.map(r => r.seq))
  const first = Math.min(...seqs)
  const last = Math.max(...seqs)
  let maxGapMs = 0
  for (let i = 1; i < all.length; i++) maxGapMs = Math.max(maxGapMs, all[i]!.at - all[i - 1]!.at)
  // Echo requests still in flight when ping stops are not counted: the window ends at the last reply.
  return { sent: last - first + 1, lost: last - first + 1 - seqs.size, maxGapMs, all }
}

/** Pinger is a running 100/s ping over the mesh. */
interface Pinger {
  replies: () => Reply[]
  stop: () => Promise<PingRun>
}

async function startPing (from: Host, ip: string): Promise<Pinger> {
  const proc = from.spawn(['ping', '-n', '-D', '-i', PING_INTERVAL, ip])
  scope.t.teardown(async () => { await proc.kill('SIGINT') })
  const pinger: Pinger = {
    replies: () => replies(proc.output()),
    stop: async () => { await proc.kill('SIGINT'); return summarize(replies(proc.output())) }
  }
  // A second of steady replies before anything changes.
  await waitFor(() => pinger.replies().length >= 100, { timeoutMs: 60_000, message: `100 ping replies from ${ip}` })
  return pinger
}

const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))

/** bothOn waits until each node uses a path of `kind` to the other and returns when the first and the last did, ms after `since`. */
async function bothOn (a: MeshNode, b: MeshNode, kind: PathKind, since: number, timeoutMs: number): Promise<{ first: number, last: number }> {
  const at = await Promise.all([[a, b], [b, a]].map(async ([x, y]) => {
    await waitFor(async () => (await peerOf(x!, y!))?.path?.kind === kind, { timeoutMs, intervalMs: 20, message: `${x!.name} choosing a ${kind} path to ${y!.name}` })
    return Date.now() - since
  }))
  return { first: Math.min(...at), last: Math.max(...at) }
}

/** windowLoss counts the echo requests in [from, to] (wall clock ms) by the replies that came in it. */
function windowLoss (rs: Reply[], from: number, to: number): { sent: number, lost: number } {
  const inside = rs.filter(r => r.at >= from && r.at <= to)
  const s = summarize(inside)
  return { sent: s.sent, lost: s.lost }
}

/** SwitchRound is one cut-and-restore cycle. */
interface SwitchRound {
  /** cut while pinging: the ping run, both nodes on the relay (ms after the cut), first reply over the relay (ms after the cut) */
  down: PingRun
  downPathMs: number
  downReplyMs: number
  /** cut removed while pinging: the ping run, and both nodes direct again (ms after the removal) */
  up: PingRun
  upPathMs: number
  /** the upgrade's ping, from UPGRADE_LEAD_MS before the first node went direct to SETTLE_MS after the second did */
  upWindow: { sent: number, lost: number }
}

/** the upgrade's loss window opens this long before the first node goes direct */
const UPGRADE_LEAD_MS = 2000

/**
 * switchRound cuts the direct path while pinging until the relay carries the ping, then
 * removes the cut while pinging until both nodes are direct. dwellMs keeps them on the relay
 * that long (after both chose it) before the cut goes: 0 returns the direct path while the
 * burst that follows a fallback still probes; a longer dwell leaves the upgrade to the
 * periodic retry.
 */
async function switchRound (lab: NatLab, a: MeshNode, b: MeshNode, dwellMs: number): Promise<SwitchRound> {
  await bothOn(a, b, 'direct', Date.now(), 180_000)
  // Cut while pinging on the direct path.
  let ping = await startPing(a.host, b.ipv4)
  const cutAt = Date.now()
  const restore = await cutDirectPath(lab, 'x', 'y')
  const downPathMs = (await bothOn(a, b, 'udp-relay', cutAt, 60_000)).last
  // The relay carries the ping once a reply comes after the silence the cut began.
  const resumed = await waitFor(() => {
    const rs = ping.replies()
    for (let i = 1; i < rs.length; i++) if (rs[i]!.at > cutAt && rs[i]!.seq - rs[i - 1]!.seq > 1) return rs[i]
    return undefined
  }, { timeoutMs: 60_000, intervalMs: 20, message: `ping replies over the relay after the cut ${a.name} -> ${b.name}` })
  await sleep(SETTLE_MS)
  const down = await ping.stop()
  // Remove the cut while pinging over the relay.
  ping = await startPing(a.host, b.ipv4)
  await sleep(Math.max(0, cutAt + downPathMs + dwellMs - Date.now()))
  const restoreAt = Date.now()
  await restore()
  const direct = await bothOn(a, b, 'direct', restoreAt, 180_000)
  await sleep(SETTLE_MS)
  const up = await ping.stop()
  const upWindow = windowLoss(up.all, restoreAt + direct.first - UPGRADE_LEAD_MS, restoreAt + direct.last + SETTLE_MS)
  return { down, downPathMs, downReplyMs: resumed.at - cutAt, up, upPathMs: direct.last, upWindow }
}

/** meshIn builds a NAT lab with sides x and y, a controller with its relay, and joins x1 and y1 (ICMP allowed both ways). */
async function meshIn (x: NatKind, y: NatKind): Promise<{ lab: NatLab, mesh: Mesh, a: MeshNode, b: MeshNode, authKey: string }> {
  const lab = await createNatLab(scope.t, { sides: [{ name: 'x', nat: x }, { name: 'y', nat: y }] })
  const mesh = await createMesh(scope.t, { hosts: [], lab })
  await mesh.admin('users', 'create', 'bench')
  const policyFile = join(mesh.dir, 'policy.hujson')
  writeFileSync(policyFile, POLICY)
  await mesh.admin('policy', 'set', policyFile, '-m', 'path bench')
  const authKey = (JSON.parse(await mesh.admin('keys', 'create', '--user', 'bench', '--reusable', '--preapproved', '--tags', 'tag:n', '--json')) as { key: string }).key
  const b = await mesh.join('y1', { authKey })
  const a = await mesh.join('x1', { authKey })
  return { lab, mesh, a, b, authKey }
}

/**
 * JoinTiming is one `warren up` timing, the path the node used right after the first reply,
 * and when both nodes used the settled path (ms after `warren up` started).
 */
interface JoinTiming extends UpTiming { path: string, settledMs: number }

async function joinRounds (m: { mesh: Mesh, a: MeshNode, b: MeshNode, authKey: string }, settle: PathKind): Promise<JoinTiming[]> {
  const out: JoinTiming[] = []
  for (let i = 0; i < upRounds; i++) {
    // Start each round from the settled path, as a node that rejoins a working mesh would.
    await bothOn(m.a, m.b, settle, Date.now(), 180_000)
    const u = await upToPing(m.mesh, m.a, m.b.ipv4, m.authKey, { echoWaitS: ECHO_WAIT_S })
    const path = (await peerOf(m.a, m.b))?.path?.kind ?? 'none'
    out.push({ ...u, path, settledMs: (await bothOn(m.a, m.b, settle, u.startedAt, 180_000)).last })
  }
  return out
}

async function run (): Promise<void> {
  const skip = netnsSkipReason()
  if (skip !== false) throw new Error(`path-bench needs root and network namespaces: ${skip}`)
  const load0 = loadNow()

  console.error('cone/cone: building the lab and the mesh')
  const cone = await meshIn('cone', 'cone')
  await waitForPath(cone.a, cone.b, 'direct', 180_000)
  const quick: SwitchRound[] = []
  const later: SwitchRound[] = []
  for (let r = 0; r < rounds; r++) {
    for (const [list, dwell] of [[quick, 0], [later, relayedMs]] as const) {
      console.error(`switch round ${r + 1}/${rounds}, ${dwell / 1000} s on the relay`)
      const s = await switchRound(cone.lab, cone.a, cone.b, dwell)
      console.error(`  cut: relay after ${s.downPathMs} ms, replies after ${s.downReplyMs.toFixed(0)} ms, lost ${s.down.lost}/${s.down.sent};` +
        ` restore: direct after ${s.upPathMs} ms, lost ${s.upWindow.lost}/${s.upWindow.sent} around the switch, ${s.up.lost}/${s.up.sent} in the run, longest gap ${s.up.maxGapMs.toFixed(0)} ms`)
      list.push(s)
    }
  }
  console.error('cone/cone: warren up -> first ping reply')
  const directUps = await joinRounds(cone, 'direct')

  console.error('symmetric/cone: building the lab and the mesh')
  const sym = await meshIn('symmetric', 'cone')
  await waitForPath(sym.a, sym.b, 'udp-relay', 180_000)
  console.error('symmetric/cone: warren up -> first ping reply')
  const relayUps = await joinRounds(sym, 'udp-relay')
  const load1 = loadNow()

  const fmt = (x: number): string => Number.isFinite(x) ? x.toFixed(0) : '-'
  const pct = (run: PingRun): number => run.sent === 0 ? NaN : 100 * run.lost / run.sent
  const pctS = (x: number): string => Number.isFinite(x) ? x.toFixed(2) : '-'
  const cuts = [...quick, ...later]
  const row = (name: string, list: SwitchRound[], f: (s: SwitchRound) => number, show: (x: number) => string, goal = ''): string[] =>
    [name, show(median(list.map(f))), list.map(s => show(f(s))).join(' '), goal]
  const ratio = (name: string, list: SwitchRound[], f: (s: SwitchRound) => { sent: number, lost: number }): string[] =>
    [name, `${fmt(median(list.map(s => f(s).lost)))} / ${fmt(median(list.map(s => f(s).sent)))}`, list.map(s => `${f(s).lost}/${f(s).sent}`).join(' '), '']
  const winPct = (s: SwitchRound): number => s.upWindow.sent === 0 ? NaN : 100 * s.upWindow.lost / s.upWindow.sent
  const upgrade = (what: string, list: SwitchRound[]): string[][] => [
    row(`relay -> direct, ${what}: lost % around the switch`, list, winPct, pctS, `<= ${MAX_UPGRADE_LOSS_PCT} %`),
    ratio(`relay -> direct, ${what}: lost / sent around the switch`, list, s => s.upWindow),
    ratio(`relay -> direct, ${what}: lost / sent in the whole run`, list, s => s.up),
    row(`relay -> direct, ${what}: longest silence, ms`, list, s => s.up.maxGapMs, fmt),
    row(`relay -> direct, ${what}: cut removed to both nodes direct, ms`, list, s => s.upPathMs, fmt)
  ]
  const upLoss = median(cuts.map(winPct))
  const fallback = median(cuts.map(s => s.downReplyMs))
  const table = printTable(['switch (x1 pings y1 100/s; cone NATs both sides)', 'median', 'runs', 'goal'], [
    ...upgrade('cut removed at once', quick),
    ...upgrade(`after ${relayedMs / 1000} s relayed`, later),
    row('direct cut -> relay: cut to first reply over the relay, ms', cuts, s => s.downReplyMs, fmt, `<= ${MAX_FALLBACK_MS}`),
    row('direct cut -> relay: cut to both nodes on the relay, ms', cuts, s => s.downPathMs, fmt, `<= ${MAX_FALLBACK_MS}`),
    row('direct cut -> relay: lost %', cuts, s => pct(s.down), pctS, '(expected)'),
    ratio('direct cut -> relay: lost / sent', cuts, s => s.down)
  ])
  const upRow = (name: string, settled: PathKind, ups: JoinTiming[]): string[][] => [
    [`${name}: to the first ping reply`, fmt(median(ups.map(u => u.toPing))), ups.map(u => fmt(u.toPing)).join(' '), ups.map(u => u.path).join(' ')],
    [`${name}: until both nodes use the ${settled} path`, fmt(median(ups.map(u => u.settledMs))), ups.map(u => fmt(u.settledMs)).join(' '), ''],
    [`${name}: until \`warren up\` returned`, fmt(median(ups.map(u => u.upCmd))), ups.map(u => fmt(u.upCmd)).join(' '), '']
  ]
  const upTable = printTable(['from `warren up` (x1, after `warren down`; y1 up)', 'median ms', 'runs', 'x1\'s path to y1 at the first reply'],
    [...upRow('cone/cone', 'direct', directUps), ...upRow('symmetric/cone', 'udp-relay', relayUps)])
  const summary = [
    `Upgrade relay -> direct: median loss **${pctS(upLoss)} %** around the switch, both kinds of round (goal <= ${MAX_UPGRADE_LOSS_PCT} %): ${upLoss <= MAX_UPGRADE_LOSS_PCT ? 'met' : 'NOT met'}.`,
    `Fallback direct -> relay: the relay carried the ping a median **${fmt(fallback)} ms** after the cut (goal <= ${MAX_FALLBACK_MS} ms): ${fallback <= MAX_FALLBACK_MS ? 'met' : 'NOT met'}.`,
    loadLine(load0, load1)
  ].join('\n')
  console.log(table)
  console.log(upTable)
  console.log(summary)
  if (process.argv.includes('--write')) {
    writeResults('Paths: switching and first ping', `Command: \`${command}\` (root; \`npx tsc -b\` first)\n\n` +
      'One run in the NAT lab (namespaces, nftables NATs, a router between the NATs), a real controller with its embedded kernel UDP relay and two daemons, x1 and y1. ' +
      `Switching: x1 and y1 behind cone NATs, x1 runs \`ping -i ${PING_INTERVAL}\` to y1's mesh address. Each of ${rounds} rounds does two cycles; each cycle starts direct, cuts the direct path while pinging ` +
      '(the router between the NATs drops UDP between their public addresses; the relay is reached another way) until both nodes use the relay and it carries the ping, ' +
      'then, in a second ping run, removes the cut until both nodes are direct again: in the first cycle as soon as that ping runs (the probe burst that follows a fallback still runs), ' +
      `in the second ${relayedMs / 1000} s after both nodes chose the relay (the periodic retry, which calls the peer in through the controller, finds the path). Each ping run goes on ${SETTLE_MS} ms after the switch. ` +
      `"Around the switch" counts the echo requests from ${UPGRADE_LEAD_MS} ms before the first node went direct to ${SETTLE_MS} ms after the second did; "whole run" from the first to the last answered one. ` +
      'The longest silence is the longest time between two replies in the run. The fallback rows count both cycles. ' +
      'The first retry starts 40 s after the burst that followed the fallback, so the time to direct after a longer stay on the relay is mostly ' +
      'how far that retry was (anywhere in 0-40 s in general), not the cost of the switch.\n\n' +
      table + '\n' +
      `Time from \`warren up\` to the first ping reply (y1 up; x1 taken down and up ${upRounds} times; a shell loop in x1's namespace pings y1 until one echo is answered, each echo waiting ${ECHO_WAIT_S} s for its reply), ` +
      'cone/cone and symmetric (x1) / cone (y1):\n\n' + upTable + '\n' + summary)
  }
}

run().catch(e => { scope.fail(); console.error(e instanceof Error ? e.message : e); process.exitCode = 1 }).finally(scope.cleanup)
