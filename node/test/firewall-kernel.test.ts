/**
 * Real-kernel checks of NftablesFirewall: two network namespaces joined by a veth pair,
 * one side named like the mesh interface, and real TCP, UDP and ICMP packets across it.
 * Skips when not root or when `nft`/`ip` are missing.
 */
import t from 'tap'
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { writeFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { createInterface } from 'node:readline'
import { filterAllows, type FilterRule } from '@warren/protocol'
import { createCommandRunner, type CommandRunner, type CommandSession } from '../src/runner/index.js'
import { createNftablesFirewall } from '../src/firewall/nftables.js'
import { createNftSession, NftRefusedError } from '../src/firewall/nft-session.js'
import { REJECT_LIMIT } from '../src/firewall/flow-chains.js'
import { renderTableScript, RULESET_MARKER } from '../src/firewall/nft-render.js'
import { createRulesetCompiler } from '../src/firewall/ruleset-compiler.js'
import { skipUnlessKernel } from './kernel-fixtures.js'

await skipUnlessKernel('the real-kernel firewall tests')
const host = createCommandRunner()

/**
 * AGENT is a small program run inside a namespace: it serves TCP/UDP echo and answers
 * probe and stream commands given as JSON lines on stdin, one JSON reply line each.
 */
const AGENT = `
import net from 'node:net'
import dgram from 'node:dgram'
import { createInterface } from 'node:readline'
const streams = new Map()
const reply = (id, r) => process.stdout.write(JSON.stringify({ id, ...r }) + '\\n')
// ICMP port unreachable: no one listens; administratively prohibited (EHOSTUNREACH over
// IPv4, EACCES over IPv6): the node's filter rejected the flow
const verdictOf = code => code === 'ECONNREFUSED' ? 'refused' : code === 'EHOSTUNREACH' || code === 'EACCES' ? 'prohibited' : 'error:' + code
function tcpProbe ({ src, dst, port, ms }) {
  return new Promise(resolve => {
    const s = net.connect({ host: dst, port, localAddress: src })
    const done = r => { clearTimeout(timer); s.destroy(); resolve(r) }
    const timer = setTimeout(() => done('timeout'), ms)
    s.on('connect', () => done('open'))
    s.on('error', e => done(verdictOf(e.code)))
  })
}
function udpProbe ({ src, dst, port, ms, size }) {
  return new Promise(resolve => {
    const s = dgram.createSocket(dst.includes(':') ? 'udp6' : 'udp4')
    const done = r => { clearTimeout(timer); s.close(); resolve(r) }
    const timer = setTimeout(() => done('timeout'), ms)
    s.on('message', () => done('open'))
    // connected, so that an ICMP port unreachable surfaces as ECONNREFUSED
    s.on('error', e => done(verdictOf(e.code)))
    s.bind({ address: src }, () => s.connect(port, dst, () => s.send(Buffer.alloc(size ?? 5, 1))))
  })
}
createInterface({ input: process.stdin }).on('line', async line => {
  const c = JSON.parse(line)
  if (c.op === 'listen') {
    for (const port of c.tcp) net.createServer(s => { s.on('error', () => {}); s.pipe(s) }).listen({ port, host: '::' })
    for (const port of c.udp) { const u = dgram.createSocket({ type: 'udp6' }); u.on('message', (m, r) => u.send(m, r.port, r.address)); u.bind(port, '::') }
    setTimeout(() => reply(c.id, { ok: true }), 100)
  } else if (c.op === 'tcp') reply(c.id, { result: await tcpProbe(c) })
  else if (c.op === 'udp') reply(c.id, { result: await udpProbe(c) })
  else if (c.op === 'stream') {
    const st = { echoed: 0, last: 0, sock: net.connect({ host: c.dst, port: c.port, localAddress: c.src }) }
    st.sock.on('data', b => { st.echoed += b.length; st.last = Date.now() })
    st.sock.on('error', () => {})
    st.sock.on('connect', () => {
      st.timer = setInterval(() => st.sock.write(Buffer.alloc(512, 1)), 10)
      reply(c.id, { ok: true })
    })
    streams.set(c.name, st)
  } else if (c.op === 'ustream') {
    const st = { echoed: 0, last: 0, sock: dgram.createSocket(c.dst.includes(':') ? 'udp6' : 'udp4') }
    st.sock.on('message', b => { st.echoed += b.length; st.last = Date.now() })
    st.sock.on('error', () => {})
    st.sock.bind({ address: c.src }, () => {
      st.timer = setInterval(() => st.sock.send(Buffer.alloc(64, 1), c.port, c.dst), 10)
      reply(c.id, { ok: true })
    })
    streams.set(c.name, st)
  } else if (c.op === 'flood') {
    const u = dgram.createSocket(c.dst.includes(':') ? 'udp6' : 'udp4')
    const started = Date.now()
    let left = c.count
    u.on('error', () => {})
    u.bind({ address: c.src }, () => {
      for (let i = 0; i < c.count; i++) u.send(Buffer.alloc(8, 1), c.port, c.dst, () => { if (--left === 0) { u.close(); reply(c.id, { ms: Date.now() - started }) } })
    })
  } else if (c.op === 'stats') {
    const st = streams.get(c.name)
    reply(c.id, { echoed: st.echoed, last: st.last, now: Date.now() })
  }
})
`

interface Agent { call: (cmd: Record<string, unknown>) => Promise<any>, proc: ChildProcessWithoutNullStreams }

const tag = `${process.pid.toString(36)}${randomBytes(2).toString('hex')}`.slice(-7)
const NS_NODE = `wfn${tag}` // the node under test, whose firewall is applied
const NS_PEER = `wfp${tag}` // peers of the mesh, several source addresses
const MESH = `wm${tag}` // the mesh interface name, on the node
const TABLE = `wt${tag}`
const dir = mkdtempSync(join(tmpdir(), 'warren-fw-'))
const agentPath = join(dir, 'agent.mjs')
writeFileSync(agentPath, AGENT)
const agents: Agent[] = []

const inNode: CommandRunner = createCommandRunner({ netns: NS_NODE })
const inPeer: CommandRunner = createCommandRunner({ netns: NS_PEER })
const PEERS4 = ['100.64.0.1', '100.64.0.2', '100.64.0.3', '100.64.0.4']
const PEERS6 = ['fd7a::1', 'fd7a::2', 'fd7a::3', 'fd7a::4']
const NODE4 = '100.64.0.100'
const NODE6 = 'fd7a::100'
const TCP_PORTS = [7001, 7002, 7003, 7004]
const UDP_PORTS = [7101, 7102]

t.teardown(async () => {
  for (const a of agents) a.proc.kill('SIGKILL')
  await host.run(['ip', 'netns', 'del', NS_NODE], { allowFail: true })
  await host.run(['ip', 'netns', 'del', NS_PEER], { allowFail: true })
  rmSync(dir, { recursive: true, force: true })
})

async function sh (r: CommandRunner, ...cmds: string[][]): Promise<void> {
  for (const c of cmds) await r.run(c)
}

function startAgent (ns: string): Agent {
  const proc = spawn('ip', ['netns', 'exec', ns, process.execPath, agentPath], { stdio: ['pipe', 'pipe', 'pipe'] })
  const waiting = new Map<number, (v: unknown) => void>()
  let next = 0
  createInterface({ input: proc.stdout }).on('line', line => {
    const msg = JSON.parse(line) as { id: number }
    waiting.get(msg.id)?.(msg)
    waiting.delete(msg.id)
  })
  proc.stderr.on('data', (b: Buffer) => process.stderr.write(`[agent ${ns}] ${b.toString()}`))
  const agent: Agent = {
    proc,
    call: async cmd => await new Promise(resolve => {
      const id = next++
      waiting.set(id, resolve)
      proc.stdin.write(JSON.stringify({ id, ...cmd }) + '\n')
    })
  }
  agents.push(agent)
  return agent
}

/** Topology: peer ns --(veth: peer side wa…, node side = mesh name)-- node ns, plus a second veth as "another interface". */
await sh(host, ['ip', 'netns', 'add', NS_NODE], ['ip', 'netns', 'add', NS_PEER],
  ['ip', 'link', 'add', MESH, 'netns', NS_NODE, 'type', 'veth', 'peer', 'name', `wa${tag}`, 'netns', NS_PEER],
  ['ip', 'link', 'add', `wo${tag}`, 'netns', NS_NODE, 'type', 'veth', 'peer', 'name', `wb${tag}`, 'netns', NS_PEER])
await sh(inNode, ['ip', 'link', 'set', 'lo', 'up'], ['ip', 'link', 'set', MESH, 'up'], ['ip', 'link', 'set', `wo${tag}`, 'up'],
  ['ip', 'addr', 'add', `${NODE4}/24`, 'dev', MESH], ['ip', 'addr', 'add', `${NODE6}/64`, 'dev', MESH, 'nodad'],
  ['ip', 'addr', 'add', '10.9.0.2/24', 'dev', `wo${tag}`])
await sh(inPeer, ['ip', 'link', 'set', 'lo', 'up'], ['ip', 'link', 'set', `wa${tag}`, 'up'], ['ip', 'link', 'set', `wb${tag}`, 'up'],
  ...PEERS4.map(a => ['ip', 'addr', 'add', `${a}/24`, 'dev', `wa${tag}`]),
  ...PEERS6.map(a => ['ip', 'addr', 'add', `${a}/64`, 'dev', `wa${tag}`, 'nodad']),
  ['ip', 'addr', 'add', '10.9.0.1/24', 'dev', `wb${tag}`])
// WireGuard is point-to-point without neighbour discovery; static neighbours make the veth alike.
const mac = async (r: CommandRunner, dev: string): Promise<string> => JSON.parse((await r.run(['ip', '-j', 'link', 'show', dev])).stdout)[0].address
const nodeMac = await mac(inNode, MESH)
const peerMac = await mac(inPeer, `wa${tag}`)
await sh(inPeer, ['ip', '-6', 'neigh', 'replace', NODE6, 'lladdr', nodeMac, 'dev', `wa${tag}`, 'nud', 'permanent'])
await sh(inNode, ...PEERS6.map(a => ['ip', '-6', 'neigh', 'replace', a, 'lladdr', peerMac, 'dev', MESH, 'nud', 'permanent']))

// The kernel's own limit on ICMP errors (per peer: a burst of 6, then one a second for IPv4)
// would hide the table's: off here, so every reject the table sends arrives.
await sh(inNode, ['sysctl', '-q', '-w', 'net.ipv4.icmp_ratelimit=0'], ['sysctl', '-q', '-w', 'net.ipv6.icmp.ratelimit=0'], ['sysctl', '-q', '-w', 'net.ipv4.icmp_msgs_burst=100000'], ['sysctl', '-q', '-w', 'net.ipv4.icmp_msgs_per_sec=100000'])
// The peer counts the "administratively prohibited" errors it receives.
await inPeer.run(['nft', '-f', '-'], {
  input: `table inet probe {
  counter prohibited {}
  chain in {
    type filter hook input priority 0; policy accept;
    icmp type destination-unreachable icmp code admin-prohibited counter name "prohibited"
    icmpv6 type destination-unreachable icmpv6 code admin-prohibited counter name "prohibited"
  }
}
`
})
const prohibitedSeen = async (): Promise<number> => JSON.parse((await inPeer.run(['nft', '-j', 'list', 'counter', 'inet', 'probe', 'prohibited'])).stdout).nftables[1].counter.packets

const node = startAgent(NS_NODE)
const peer = startAgent(NS_PEER)
await node.call({ op: 'listen', tcp: TCP_PORTS, udp: UDP_PORTS })
await peer.call({ op: 'listen', tcp: [9000], udp: [9100] })

const FOREIGN = `table inet othertable {
  set keep { type ipv4_addr . inet_service; flags interval; elements = { 10.0.0.0/8 . 22 } }
  chain c {
    type filter hook input priority 0; policy accept;
    ip saddr . tcp dport @keep accept
  }
}
`
await inNode.run(['nft', '-f', '-'], { input: FOREIGN })
const listForeign = async (): Promise<string> => (await inNode.run(['nft', 'list', 'table', 'inet', 'othertable'])).stdout
const listOurs = async (): Promise<string> => (await inNode.run(['nft', 'list', 'table', 'inet', TABLE])).stdout
const foreignBefore = await listForeign()

// A forbidden SYN is answered at once over IPv4; over IPv6 the veth hands the answer back
// while connect() still holds its socket, so TCP ignores it and learns from the answer to
// the SYN's retransmission, 1 s later (over WireGuard the answer comes later: e2e-policy).
const tcp = (src: string, port: number, ms = 1500): Promise<string> => peer.call({ op: 'tcp', src, dst: src.includes(':') ? NODE6 : NODE4, port, ms }).then(r => r.result)
const udp = (src: string, port: number, ms = 400, size?: number): Promise<string> => peer.call({ op: 'udp', src, dst: src.includes(':') ? NODE6 : NODE4, port, ms, size }).then(r => r.result)
const ping = async (src: string): Promise<string> => {
  const r = await inPeer.run(['ping', src.includes(':') ? '-6' : '-4', '-c', '1', '-W', '1', '-I', src, src.includes(':') ? NODE6 : NODE4], { allowFail: true })
  return r.exitCode === 0 ? 'open' : 'timeout'
}
const rule = (srcs: string[], protos: number[], ports: Array<[number, number]> = []): FilterRule => ({ srcs, protos, ports: ports.map(([first, last]) => ({ first, last })) })

const fw = createNftablesFirewall({ runner: inNode, table: TABLE })
await fw.up()
const ctx = { interfaceName: MESH }

t.test('allowed ports connect, denied ports do not, ICMP only where allowed, other interfaces untouched', async t => {
  t.equal(await tcp(PEERS4[0]!, 7001), 'open', 'before any table, the mesh is open (sanity)')
  await fw.set([rule([PEERS4[0]!, PEERS6[0]!], [6], [[7001, 7001]]), rule([PEERS4[1]!], [1, 58])], ctx)
  const [a, b, c, d, e] = await Promise.all([tcp(PEERS4[0]!, 7001), tcp(PEERS4[0]!, 7002), tcp(PEERS4[1]!, 7001), tcp(PEERS6[0]!, 7001), tcp(PEERS6[1]!, 7001)])
  t.equal(a, 'open', 'allowed peer, allowed port')
  t.equal(b, 'prohibited', 'allowed peer, other port: rejected as prohibited (not refused as if no one listened)')
  t.equal(c, 'prohibited', 'other peer on the allowed port')
  t.equal(d, 'open', 'IPv6 peer, allowed port')
  t.equal(e, 'prohibited', 'other IPv6 peer')
  t.equal(await ping(PEERS4[1]!), 'open', 'ping from the peer allowed ICMP')
  t.equal(await ping(PEERS4[0]!), 'timeout', 'no ping from the peer allowed only TCP')
  t.equal(await ping(PEERS6[0]!), 'timeout', 'no ICMPv6 unless allowed')
  const other = await peer.call({ op: 'tcp', src: '10.9.0.1', dst: '10.9.0.2', port: 7002, ms: 1000 })
  t.equal(other.result, 'open', 'the other interface is not judged')
  t.equal(await listForeign(), foreignBefore, 'the foreign table is byte-identical')
})

t.test('a forbidden new flow is rejected at once, within a rate limit; a forbidden ping is dropped', async t => {
  await fw.set([rule([PEERS4[0]!], [6], [[7001, 7001]])], ctx)
  const started = Date.now()
  const [a, b, c] = await Promise.all([tcp(PEERS4[1]!, 7001), udp(PEERS4[1]!, UDP_PORTS[0]!), udp(PEERS6[1]!, UDP_PORTS[0]!)])
  t.same([a, b, c], ['prohibited', 'prohibited', 'prohibited'], 'a forbidden SYN and forbidden datagrams (IPv4, IPv6) are answered as prohibited')
  t.ok(Date.now() - started < 1000, `within 1 s (${Date.now() - started} ms)`)
  const before = await prohibitedSeen()
  t.equal(await ping(PEERS4[1]!), 'timeout', 'a forbidden ping gets no answer')
  t.equal(await prohibitedSeen(), before, 'not even an error: ICMP is dropped')

  // A flood far over the limit: the node answers about the limit, and drops the rest.
  const count = 2000
  const { ms } = await peer.call({ op: 'flood', src: PEERS4[1], dst: NODE4, port: UDP_PORTS[1], count })
  let seen = await prohibitedSeen()
  for (let last = -1; seen !== last;) { // until the answers stop coming
    await new Promise(resolve => setTimeout(resolve, 200))
    last = seen
    seen = await prohibitedSeen()
  }
  const answered = seen - before
  const most = REJECT_LIMIT.burst + REJECT_LIMIT.rate * (ms / 1000 + 0.5)
  t.comment(`${count} forbidden datagrams in ${ms} ms: ${answered} rejects came back (limit ${REJECT_LIMIT.rate}/s, burst ${REJECT_LIMIT.burst})`)
  t.ok(answered >= REJECT_LIMIT.rate / 2, `some are answered (${answered})`)
  t.ok(answered <= most, `no more than the limit allows (${answered} <= ${Math.round(most)}): the rest are dropped`)
})

t.test('a refused update or rebuild leaves the kernel ruleset byte-identical and the previous rules in force', async t => {
  // a port range wider than a few ports puts elements in the interval set allow4i
  const good = [rule([PEERS4[0]!], [6], [[7001, 7001]]), rule(['100.64.0.0/31'], [6], [[7002, 7100]])]
  await fw.set(good, ctx)
  const before = await listOurs()
  const joining = rule([PEERS4[2]!], [6], [[7003, 7003]])
  // Each case adds a line to one nft run's script: the element update's check, the element
  // update itself (its check saw the clean script), or the check of a rebuild. nft refuses the
  // out-of-range port itself; the kernel refuses the overlap with an element of allow4i after
  // nft sent the whole batch.
  const outOfRange = `add element inet ${TABLE} allow4 { ${PEERS4[3]} . 6 . 70000 }`
  const cases = [
    { name: 'an update refused at its check', target: 'check', rebuild: false, line: outOfRange, said: /at the check[^]*out of range/ },
    { name: 'an update that nft refuses', target: 'apply', rebuild: false, line: outOfRange, said: /out of range/ },
    { name: 'an update that the kernel refuses', target: 'apply', rebuild: false, line: `add element inet ${TABLE} allow4i { ${PEERS4[0]} . 6 . 7050-7200 }`, said: /File exists/ },
    { name: 'a rebuild refused at the check', target: 'check', rebuild: true, line: outOfRange, said: /at the check[^]*out of range/ }
  ] as const
  // Element updates go to the nft sessions (one checks, one applies) when the runner can open
  // them, else to `nft --check -f` and `nft -f`: each refusal is tried both ways.
  for (const via of ['session', 'nft -f'] as const) {
    for (const c of cases) {
      const name = `${c.name} (${via})`
      let corrupt = true
      const runs: string[] = []
      const runner: CommandRunner = {
        run: async (argv, opts) => {
          if (argv.includes('-f')) runs.push(argv.join(' '))
          const target = corrupt && argv.includes('-f') && argv.includes('--check') === (c.target === 'check')
          return await inNode.run(argv, target ? { ...opts, input: `${opts?.input ?? ''}${c.line}\n` } : opts)
        },
        ...(via === 'session'
          ? {
              open: async (argv, opts) => {
                const s = await inNode.open!(argv, opts)
                // A session writes an update's line and its marker together: the bad command joins the update's line.
                const target = argv.includes('--check') === (c.target === 'check')
                const w = Object.create(s) as CommandSession
                w.write = text => s.write(corrupt && target ? text.replace('\n', `; ${c.line}\n`) : text)
                return w
              }
            }
          : {})
      }
      const broken = createNftablesFirewall({ runner, table: TABLE })
      await broken.set(good, ctx) // adopts the table: nothing to send
      runs.length = 0
      const err = await broken.set([...good, joining], c.rebuild ? { interfaceName: `wx${tag}` } : ctx).catch(e => e)
      t.equal(err?.code, 'firewall_apply_failed', `${name}: set throws`)
      t.match(err?.message, /previous rules stay in force/, `${name}: the error says the rules did not change`)
      t.match(err?.message, c.said, `${name}: the error quotes nft`)
      if (c.rebuild || (c.target === 'check' && via === 'nft -f')) t.same(runs, ['nft --check -f -'], `${name}: nothing ran after the failed check`)
      else if (via === 'nft -f') t.same(runs.slice(0, 2), ['nft --check -f -', 'nft -f -'], `${name}: the update was checked, then refused`)
      else t.same(runs, [], `${name}: the update went to the sessions, no nft -f ran`)
      if (via === 'session' && c.target === 'check' && !c.rebuild) t.equal(broken.sessionPid(), undefined, `${name}: nothing reached the applying session`)
      t.equal(await listOurs(), before, `${name}: our table is byte-identical`)
      const [joined, kept, range] = await Promise.all([tcp(PEERS4[2]!, 7003), tcp(PEERS4[0]!, 7001), tcp(PEERS4[0]!, 7002)])
      t.equal(joined, 'prohibited', `${name}: the new peer's rule is not in force`)
      t.equal(kept, 'open', `${name}: the previous rules are enforced`)
      t.equal(range, 'open', `${name}: the range source's too`)
      if (c.target === 'apply') {
        const pid = broken.sessionPid()
        corrupt = false
        await broken.set([...good, joining], ctx)
        t.equal(broken.lastApply()?.kind, 'elements', `${name}: the next update is again an element update`)
        if (via === 'session') t.equal(broken.sessionPid(), pid, `${name}: by the same nft session`)
        t.equal(await tcp(PEERS4[2]!, 7003), 'open', `${name}: and it takes effect`)
        await broken.set(good, ctx)
      }
      await broken.release()
    }
  }
})

t.test('one session line with a good and a bad element applies neither', async t => {
  const scratch = `${TABLE}s`
  await inNode.run(['nft', '-f', '-'], {
    input: `table inet ${scratch} {\n  set h { type ipv4_addr . inet_proto . inet_service; }\n  set r { type ipv4_addr . inet_proto . inet_service; flags interval; elements = { 100.64.0.1 . 6 . 100-200 } }\n}\n`
  })
  t.teardown(() => inNode.run(['nft', 'delete', 'table', 'inet', scratch], { allowFail: true }))
  const list = async (): Promise<string> => (await inNode.run(['nft', 'list', 'table', 'inet', scratch])).stdout
  const before = await list()
  const session = createNftSession({ runner: inNode })
  t.teardown(() => session.close())
  const good = `add element inet ${scratch} h { 100.64.0.9 . 6 . 22 }`
  const bad: Array<[string, string, RegExp]> = [
    ['nft refuses it', `add element inet ${scratch} h { 100.64.0.8 . 6 . 70000 }`, /Error: Service out of range/],
    ['the kernel refuses it (overlap)', `add element inet ${scratch} r { 100.64.0.1 . 6 . 150-300 }`, /Error: Could not process rule: File exists/],
    ['the kernel refuses it (deleting a missing element)', `delete element inet ${scratch} h { 100.64.0.7 . 6 . 22 }`, /Error: Could not process rule: No such file or directory/]
  ]
  for (const [name, line, said] of bad) {
    const err = await session.apply(`${good}\n${line}\n`).catch(e => e)
    t.ok(err instanceof NftRefusedError, `${name}: refused`)
    t.match(err?.said, said, `${name}: nft's own words`)
    t.equal(await list(), before, `${name}: the good element was not applied either`)
  }
  t.equal(session.starts, 1, 'refusals do not end the session')
  await session.apply(`${good}\n`)
  t.match(await list(), /100\.64\.0\.9 \. tcp \. 22/, 'a good line alone applies')
})

t.test('element updates run in one long-lived nft that follows rebuilds, is replaced when it dies, and ends on release', async t => {
  const procAlive = (pid: number): boolean => { try { process.kill(pid, 0); return true } catch { return false } }
  const waitFor = async (ok: () => boolean, what: string): Promise<void> => {
    const deadline = Date.now() + 60_000
    while (!ok() && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 10))
    t.ok(ok(), what)
  }
  const base = [rule([PEERS4[0]!], [6], [[7001, 7001]])]
  await fw.set(base, ctx)
  await fw.set([...base, rule([PEERS4[1]!], [6], [[7002, 7002]])], ctx)
  const pid = fw.sessionPid()!
  t.ok(pid > 0 && procAlive(pid), 'an nft session runs after an element update')
  t.match(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' '), /^nft -i /)
  await fw.set(base, ctx)
  t.equal(fw.sessionPid(), pid, 'the next update uses the same nft')
  t.equal(await tcp(PEERS4[1]!, 7002), 'prohibited', 'and took effect')

  // a rebuild by another nft run: the session's next update sees the new table
  await inNode.run(['nft', 'delete', 'element', 'inet', TABLE, 'allow4', `{ ${PEERS4[0]} . 6 . 7001 }`])
  t.equal(await fw.sync(), 'rebuilt')
  await fw.set([...base, rule([PEERS4[2]!], [6], [[7003, 7003]])], ctx)
  t.equal(fw.lastApply()?.kind, 'elements')
  t.equal(fw.sessionPid(), pid)
  const [a, b] = await Promise.all([tcp(PEERS4[2]!, 7003), tcp(PEERS4[0]!, 7001)])
  t.same([a, b], ['open', 'open'], 'the update after the rebuild took effect, the rebuilt rules too')

  process.kill(pid, 'SIGKILL')
  await waitFor(() => fw.sessionPid() === undefined, 'the firewall notices that its nft died')
  await fw.set(base, ctx)
  const second = fw.sessionPid()
  t.ok(second !== undefined && second !== pid, 'the next update starts a new nft')
  t.equal(await tcp(PEERS4[2]!, 7003), 'prohibited', 'and takes effect')

  const table = await listOurs()
  await fw.release()
  t.equal(fw.sessionPid(), undefined)
  await waitFor(() => !procAlive(second!), 'release ends nft')
  t.equal(await listOurs(), table, 'and leaves the table as it was')
  t.equal(await tcp(PEERS4[0]!, 7001), 'open', 'enforced')
  t.equal(await tcp(PEERS4[1]!, 7002), 'prohibited')
})

t.test('a process with an nft session exits by itself, and nft ends with it; so does one that stops in order on SIGTERM', async t => {
  const script = join(dir, 'session-child.mjs')
  writeFileSync(script, `
    const { createCommandRunner } = await import(${JSON.stringify(new URL('../src/runner/index.js', import.meta.url).href)})
    const { createNftablesFirewall } = await import(${JSON.stringify(new URL('../src/firewall/nftables.js', import.meta.url).href)})
    const [ns, table, iface, mode] = process.argv.slice(2)
    const fw = createNftablesFirewall({ runner: createCommandRunner({ netns: ns }), table })
    if (mode === 'wait') {
      // as the daemon stops on SIGTERM (its handler is there before the session starts): the
      // handler goes, the stop runs, and the process ends by itself
      const keep = setInterval(() => {}, 1000)
      const stop = async () => {
        process.off('SIGTERM', stop)
        await new Promise(resolve => setTimeout(resolve, 50))
        await fw.release()
        console.log('stopped')
        clearInterval(keep)
      }
      process.on('SIGTERM', stop)
    }
    const r = (src, port) => ({ srcs: [src], protos: [6], ports: [{ first: port, last: port }] })
    await fw.set([r('100.64.0.1', 22)], { interfaceName: iface })
    await fw.set([r('100.64.0.1', 22), r('100.64.0.2', 22)], { interfaceName: iface })
    console.log(fw.sessionPid())
  `)
  // the other interface: this table judges nothing the other tests send
  const childTable = `${TABLE}c`
  t.teardown(() => inNode.run(['nft', 'delete', 'table', 'inet', childTable], { allowFail: true }))
  const alive = (pid: number): boolean => { try { process.kill(pid, 0); return true } catch { return false } }
  for (const mode of ['exit', 'wait'] as const) {
    // a plain node process, as the daemon is: without the test runner's hooks, which bring
    // signal handlers of their own (the runner puts them into NODE_OPTIONS of every child)
    const child = spawn('env', ['-u', 'NODE_OPTIONS', process.execPath, script, NS_NODE, childTable, `wo${tag}`, mode], { stdio: ['ignore', 'pipe', 'inherit'] })
    const lines: string[] = []
    const pid = await new Promise<number>(resolve => createInterface({ input: child.stdout }).on('line', l => { if (lines.push(l) === 1) resolve(Number(l)) }))
    t.ok(pid > 0 && alive(pid), `${mode}: the child's nft session runs`)
    if (mode === 'wait') child.kill('SIGTERM')
    const code = await new Promise<number | string | null>(resolve => {
      const timer = setTimeout(() => { resolve('still running after 60 s'); child.kill('SIGKILL') }, 60_000)
      child.once('exit', (c, sig) => { clearTimeout(timer); resolve(c ?? sig) })
    })
    t.equal(code, 0, `${mode}: the child ended by itself, neither held open nor killed because of nft`)
    if (mode === 'wait') t.same(lines.slice(1), ['stopped'], 'SIGTERM: its own handler ran to the end (nothing re-raised the signal)')
    const deadline = Date.now() + 60_000
    while (alive(pid) && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 10))
    t.notOk(alive(pid), `${mode}: no nft left behind`)
    t.match((await inNode.run(['nft', 'list', 'table', 'inet', childTable])).stdout, /100\.64\.0\.2 \. tcp \. 22/, `${mode}: the table stays (fail-closed)`)
  }
})

t.test('revocation cuts an established flow; flows the node opened keep working', async t => {
  await fw.set([rule([PEERS4[0]!], [6], [[7001, 7001]])], ctx)
  await peer.call({ op: 'stream', name: 'in', src: PEERS4[0], dst: NODE4, port: 7001 })
  await node.call({ op: 'stream', name: 'out', src: NODE4, dst: PEERS4[1], port: 9000 })
  const stats = (a: Agent, name: string): Promise<{ echoed: number, last: number, now: number }> => a.call({ op: 'stats', name })
  // grows says whether a flow carried data within `withinMs`: generous when data is expected, a short quiet window when not.
  const grows = async (a: Agent, name: string, withinMs = 60_000): Promise<boolean> => {
    const first = (await stats(a, name)).echoed
    const deadline = Date.now() + withinMs
    while (Date.now() < deadline) {
      if ((await stats(a, name)).echoed > first) return true
      await new Promise(resolve => setTimeout(resolve, 20))
    }
    return false
  }
  t.ok(await grows(peer, 'in'), 'the peer-opened flow carries data while allowed')
  t.ok(await grows(node, 'out'), 'the node-opened flow carries data')

  const revokedAt = Date.now()
  await fw.set([], ctx)
  t.equal(fw.lastApply()?.kind, 'elements', 'the revocation is an element update')
  // Wait until no echo came for 300 ms, then check that none comes any more.
  let cut = await stats(peer, 'in')
  while (cut.now - cut.last < 300 && cut.now - revokedAt < 60_000) {
    await new Promise(resolve => setTimeout(resolve, 20))
    cut = await stats(peer, 'in')
  }
  t.comment(`the last echo arrived ${cut.last - revokedAt} ms after revocation`)
  const seen = await prohibitedSeen()
  t.notOk(await grows(peer, 'in', 1000), 'the revoked flow carries no more data')
  t.equal(await prohibitedSeen(), seen, 'and its segments, which open no connection, are dropped, not rejected')
  t.ok(await grows(node, 'out'), 'the node-opened flow still carries data (its replies are not judged)')

  await fw.set([rule([PEERS4[0]!], [6], [[7001, 7001]])], ctx)
  // The sender has been backing off its retransmissions (200 ms, 400 ms, ... doubling)
  // while it was cut, so the next try may be seconds away.
  t.ok(await grows(peer, 'in'), 'granting access again lets the same connection resume')
})

t.test('a sample of random filters and packets: the kernel agrees with filterAllows', async t => {
  let seed = Number.parseInt(randomBytes(4).toString('hex'), 16)
  t.comment(`seed ${seed}`)
  const rand = (n: number): number => { // mulberry32
    seed = (seed + 0x6d2b79f5) | 0
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) % n
  }
  const pick = <T>(xs: T[]): T => xs[rand(xs.length)]!
  for (let round = 0; round < 2; round++) {
    const filter: FilterRule[] = []
    for (let i = 0; i < 4; i++) {
      const first = pick(TCP_PORTS.concat(UDP_PORTS))
      filter.push(rule([pick(PEERS4), pick(PEERS6), pick(['100.64.0.0/30', 'fd7a::/126', '100.64.0.4'])], [pick([6, 17, 1, 58]), pick([6, 17])], [[first, first + rand(3)]]))
    }
    await fw.set(filter, ctx)
    const probes: Array<{ src: string, proto: number, dport?: number }> = []
    for (let i = 0; i < 12; i++) {
      const src = pick([...PEERS4, ...PEERS6])
      const proto = pick([6, 6, 17, 1])
      if (proto === 1) probes.push({ src, proto: src.includes(':') ? 58 : 1 })
      else probes.push({ src, proto, dport: pick(proto === 6 ? TCP_PORTS : UDP_PORTS) })
    }
    const got = await Promise.all(probes.map(p => p.proto === 6 ? tcp(p.src, p.dport!) : p.proto === 17 ? udp(p.src, p.dport!, 600) : ping(p.src)))
    probes.forEach((p, i) => {
      // a forbidden new flow is rejected, a forbidden ping dropped
      const want = filterAllows(filter, p) ? 'open' : p.proto === 6 || p.proto === 17 ? 'prohibited' : 'timeout'
      t.equal(got[i], want, `${JSON.stringify(p)}: ${want} with ${JSON.stringify(filter)}`)
    })
  }
})

t.test('a table an older daemon left, which drops forbidden flows, is rebuilt by the new one, which rejects them', async t => {
  const filter = [rule([PEERS4[0]!], [6], [[7001, 7001]])]
  const current = renderTableScript(createRulesetCompiler().compileFilter(filter), { table: TABLE, interfaceName: MESH })
  // the layout before rejects: no refuse chain, forbidden flows dropped, the marker of then
  const old = current.replace(/\n {2}chain refuse \{[^}]*\}/, '').replace(/ {4}tcp flags [^\n]* goto refuse\n/g, '')
    .replace(/goto refuse/g, 'drop').replace(RULESET_MARKER, 'warren ruleset v3')
  t.not(old, current, 'the old layout differs from the current one')
  await inNode.run(['nft', '-f', '-'], { input: old })
  t.equal(await tcp(PEERS4[1]!, 7001), 'timeout', 'the old table drops a forbidden SYN')
  const upgraded = createNftablesFirewall({ runner: inNode, table: TABLE })
  await upgraded.set(filter, ctx)
  t.equal(upgraded.lastApply()?.kind, 'rebuild', 'the new daemon does not adopt the old layout: it rebuilds the table')
  t.equal(await tcp(PEERS4[1]!, 7001), 'prohibited', 'which rejects it')
  t.equal(await tcp(PEERS4[0]!, 7001), 'open', 'and lets the allowed peer in')
  await upgraded.release()
})

t.test('a restarted daemon reads the kernel table back and sends only a diff', async t => {
  const filter = [rule([PEERS4[0]!, PEERS6[0]!, '100.64.0.128/25', 'fd7a::8000/113'], [6, 17, 1, 58], [[7001, 7003], [20000, 30000]]), rule(['*'], [6], [[0, 65535]])]
  await fw.set(filter, ctx)
  const nftRuns: string[] = []
  const recording: CommandRunner = { run: async (argv, opts) => { if (argv.includes('-f')) nftRuns.push(opts?.input ?? ''); return await inNode.run(argv, opts) } }
  const restarted = createNftablesFirewall({ runner: recording, table: TABLE })
  await restarted.up()
  await restarted.set(filter, ctx)
  t.same(nftRuns, [], 'the same filter after a restart sends nothing: the read-back matched every element')
  t.equal(await udp(PEERS4[2]!, UDP_PORTS[0]!), 'prohibited')
  await restarted.set([...filter, rule([PEERS4[2]!], [17], [[UDP_PORTS[0]!, UDP_PORTS[0]!]])], ctx)
  t.equal(restarted.lastApply()?.kind, 'elements')
  t.equal(await udp(PEERS4[2]!, UDP_PORTS[0]!), 'open', 'the diff took effect')
  t.equal(await restarted.sync(), 'unchanged', 'sync finds the kernel as applied')
  await inNode.run(['nft', 'delete', 'element', 'inet', TABLE, 'allow4', `{ ${PEERS4[2]} . 17 . ${UDP_PORTS[0]} }`])
  t.equal(await udp(PEERS4[2]!, UDP_PORTS[0]!), 'prohibited')
  t.equal(await restarted.sync(), 'rebuilt', 'an element removed behind our back is restored')
  t.equal(await udp(PEERS4[2]!, UDP_PORTS[0]!), 'open')
  await fw.set([], ctx)
})

t.test('flows the node opens get their replies, and open nothing to the peer', async t => {
  await fw.set([rule(['100.64.0.99'], [17], [[UDP_PORTS[0]!, UDP_PORTS[0]!]])], ctx)
  // the peer's echo server answers from the address its routing picks, so the node talks to that one
  const answersFrom = async (to: string): Promise<string> => JSON.parse((await inPeer.run(['ip', '-j', 'route', 'get', to])).stdout)[0].prefsrc
  const [peer4, peer6] = [await answersFrom(NODE4), await answersFrom(NODE6)]
  const out = (op: string, dst: string, port: number): Promise<string> => node.call({ op, src: dst.includes(':') ? NODE6 : NODE4, dst, port, ms: 1000 }).then(r => r.result)
  for (const dst of [peer4, peer6]) {
    t.equal(await out('tcp', dst, 9000), 'open', `TCP to ${dst}: the SYN-ACK comes back`)
    t.equal(await out('udp', dst, 9100), 'open', `UDP to ${dst}: the answer comes back`)
    t.equal(await out('udp', dst, 9199), 'refused', `UDP to a closed port of ${dst}: the ICMP port unreachable comes back`)
    const pinged = await inNode.run(['ping', dst.includes(':') ? '-6' : '-4', '-c', '1', '-W', '1', dst], { allowFail: true })
    t.equal(pinged.exitCode, 0, `ping ${dst}: the echo reply comes back`)
  }
  t.equal(await ping(peer4), 'timeout', 'the peer still may not ping the node')
  t.equal(await tcp(peer4, 7001), 'prohibited', 'nor connect to it')
  t.equal(await udp(peer4, UDP_PORTS[1]!), 'prohibited', 'nor send it datagrams')
  const flows = (await inNode.run(['nft', 'list', 'set', 'inet', TABLE, 'tcp4'])).stdout
  const tuple = new RegExp(`${peer4.replace(/\./g, '\\.')} \\. 9000 \\. \\d+ timeout 2m`)
  t.match(flows, tuple, 'the connection is recorded as the node\'s (peer . peer port . local port), and once closed it expires in 2 minutes')
  const closed = (await inNode.run(['nft', 'list', 'set', 'inet', TABLE, 'tcpend4'])).stdout
  t.match(closed, tuple, 'its FIN marked it closing, so later packets do not keep it for days')
})

t.test('a datagram larger than the path arrives in fragments, judged by its first', async t => {
  await fw.set([rule([PEERS4[0]!, PEERS6[0]!], [17], [[UDP_PORTS[0]!, UDP_PORTS[0]!]])], ctx)
  for (const src of [PEERS4[0]!, PEERS6[0]!]) {
    t.equal(await udp(src, UDP_PORTS[0]!, 1000, 4000), 'open', `4,000 bytes from ${src} to an allowed port`)
    // The IPv6 reject checks the transport checksum first, which a lone first fragment
    // cannot pass, so the kernel sends nothing for it: over IPv6 it is dropped.
    const denied = src.includes(':') ? 'timeout' : 'prohibited'
    t.equal(await udp(src, UDP_PORTS[1]!, 600, 4000), denied, `4,000 bytes from ${src} to a denied port: its first fragment is ${denied === 'timeout' ? 'dropped' : 'rejected'}`)
  }
})

t.test('revocation cuts a datagram flow the peer opened, though the node keeps answering', async t => {
  await fw.set([rule([PEERS4[2]!], [17], [[UDP_PORTS[1]!, UDP_PORTS[1]!]])], ctx)
  await peer.call({ op: 'ustream', name: 'udp-in', src: PEERS4[2], dst: NODE4, port: UDP_PORTS[1] })
  const stats = (): Promise<{ echoed: number, last: number, now: number }> => peer.call({ op: 'stats', name: 'udp-in' })
  const waitFor = async (ok: (s: { echoed: number, last: number, now: number }) => boolean, ms: number): Promise<boolean> => {
    const deadline = Date.now() + ms
    while (Date.now() < deadline) {
      if (ok(await stats())) return true
      await new Promise(resolve => setTimeout(resolve, 20))
    }
    return false
  }
  t.ok(await waitFor(s => s.echoed > 0, 60_000), 'the node answers while the flow is allowed')
  const revokedAt = Date.now()
  await fw.set([], ctx)
  t.ok(await waitFor(s => s.now - s.last > 300, 60_000), 'the answers stop')
  const cut = await stats()
  t.comment(`the last answer came ${cut.last - revokedAt} ms after the revocation`)
  await new Promise(resolve => setTimeout(resolve, 500))
  t.equal((await stats()).echoed, cut.echoed, 'and none came since: the node\'s late answers opened no way back in')
})

t.test('close removes only our table; other tables stay byte-identical', async t => {
  await fw.close()
  const r = await inNode.run(['nft', 'list', 'table', 'inet', TABLE], { allowFail: true })
  t.not(r.exitCode, 0, 'our table is gone')
  t.equal(await listForeign(), foreignBefore, 'the foreign table is byte-identical')
  t.equal(await tcp(PEERS4[3]!, 7004), 'open', 'the mesh is no longer filtered after warren down')
})
