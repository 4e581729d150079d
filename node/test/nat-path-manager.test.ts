import t, { type Test } from 'tap'
import { createPathManager, DEFAULT_PATH_TIMINGS, PUNCH_TTL, type PathManager, type PathManagerInit } from '../src/nat/path-manager.js'
import type { UdpAddress } from '../src/nat/types.js'
import { createFakeTlsRelayClient, createFakeUdpRelayClient, type FakeUdpRelayClient } from '../src/testing.js'

const PEER = 'B'.repeat(43) + '='

interface Sent { to: string, ttl?: number, txid: string, at: number }

/**
 * sim drives a path manager with a fake clock: `answers` says which full pings the
 * peer answers and after how many ms; tick() runs whenever the manager or a pong is due.
 */
function sim (opts: Partial<PathManagerInit> = {}) {
  let now = 0
  let n = 0
  const sent: Sent[] = []
  /** calls are the times the manager called the peer in (callMeMaybe) */
  const calls: number[] = []
  const pongs: Array<{ at: number, txid: string, from: UdpAddress }> = []
  let answers: (to: string) => number | undefined = () => undefined
  const m: PathManager = createPathManager({
    now: () => now,
    callMeMaybe: () => { calls.push(now) },
    probes: {
      ping (peer, to, o) {
        const txid = String(++n)
        const ep = `${to.address}:${to.port}`
        sent.push({ to: ep, ...(o?.ttl !== undefined ? { ttl: o.ttl } : {}), txid, at: now })
        const lat = o?.ttl === undefined ? answers(ep) : undefined
        if (lat !== undefined) pongs.push({ at: now + lat, txid, from: to })
        return txid
      }
    },
    ...opts
  })
  let changes = 0
  m.onChange(() => changes++)
  /** run advances the clock to `until`, doing all due work on the way */
  function run (until: number, each?: () => void): void {
    for (;;) {
      const wait = m.tick()
      each?.()
      pongs.sort((a, b) => a.at - b.at)
      const next = Math.min(now + wait, pongs[0]?.at ?? Infinity)
      if (next > until) { now = until; m.tick(); return }
      now = Math.max(next, now)
      while (pongs.length > 0 && pongs[0]!.at <= now) {
        const p = pongs.shift()!
        m.handlePong({ peerKey: PEER, txid: p.txid, from: p.from, src: { address: '203.0.113.1', port: 41641 } })
      }
    }
  }
  return {
    m, sent, calls, run,
    get now () { return now },
    set now (v: number) { now = v },
    get changes () { return changes },
    answer (f: (to: string) => number | undefined) { answers = f }
  }
}

/**
 * relayThenDirect starts PEER on a granted UDP relay; its direct path answers (while
 * setUp(true), as at first) and takes over within the first 10 s.
 */
function relayThenDirect (t: Test, opts: Partial<PathManagerInit> & { udpRelay: FakeUdpRelayClient }) {
  opts.udpRelay.grant(PEER, '192.0.2.10:40000')
  const s = sim(opts)
  s.m.setPeers([{ wgKey: PEER, endpoints: ['198.51.100.2:41641'] }])
  t.equal(s.m.path(PEER)?.kind, 'udp-relay')
  let up = true
  s.answer(() => up ? 5 : undefined)
  s.run(10_000)
  t.equal(s.m.path(PEER)?.kind, 'direct')
  return { s, setUp: (v: boolean) => { up = v } }
}

t.test('probing sends TTL-limited probes to every candidate first, then full pings; a pong makes the path direct', async t => {
  const s = sim()
  s.m.setSelfEndpoints(['203.0.113.1:41641'])
  s.m.setPeers([{ wgKey: PEER, endpoints: ['198.51.100.2:41641', '10.0.0.2:41641'] }])
  s.answer(to => to === '198.51.100.2:41641' ? 20 : undefined)
  s.run(0)
  t.same(s.sent.map(x => [x.to, x.ttl]), [['198.51.100.2:41641', PUNCH_TTL], ['10.0.0.2:41641', PUNCH_TTL]], 'only TTL-limited probes at first')
  t.equal(s.m.path(PEER), undefined, 'no relay and nothing confirmed: no path (WireGuard keeps the map endpoint)')
  s.run(DEFAULT_PATH_TIMINGS.punchDelayMs + 100)
  const firstFull = s.sent.find(x => x.ttl === undefined)!
  t.ok(firstFull.at >= DEFAULT_PATH_TIMINGS.punchDelayMs, 'full pings wait for the punch delay')
  t.ok(s.sent.filter(x => x.at === firstFull.at && x.ttl === PUNCH_TTL).length === 2, 'each full ping round is preceded by TTL probes')
  t.same(s.m.path(PEER), { kind: 'direct', endpoint: '198.51.100.2:41641', latencyMs: 20 })
  t.same([...s.m.endpoints()], [[PEER, '198.51.100.2:41641']])
  t.equal(s.changes, 1)
})

t.test('IPv6 candidates are probed like IPv4 ones; an IPv6 pong makes an IPv6 direct path', async t => {
  const s = sim()
  s.m.setPeers([{ wgKey: PEER, endpoints: ['198.51.100.2:41641', '[2001:db8::2]:41641'] }])
  s.answer(to => to === '2001:db8::2:41641' ? 10 : undefined)
  s.run(DEFAULT_PATH_TIMINGS.punchDelayMs + 100)
  t.ok(s.sent.some(x => x.to === '2001:db8::2:41641' && x.ttl === undefined), 'full pings to the IPv6 address, without brackets')
  t.same(s.m.path(PEER), { kind: 'direct', endpoint: '[2001:db8::2]:41641', latencyMs: 10 }, 'WireGuard gets the endpoint in [v6]:port form')
  s.m.handlePing(PEER, { address: '2001:db8::3', port: 5000 })
  s.run(s.now)
  t.ok(s.sent.some(x => x.to === '2001:db8::3:5000' && x.ttl === undefined), 'a ping from a new IPv6 address is pinged back at once')
})

t.test('with no direct path a relay is used at once: the UDP relay when it has an endpoint, else TLS', async t => {
  const udp = createFakeUdpRelayClient()
  const tls = createFakeTlsRelayClient()
  const s = sim({ udpRelay: udp, tlsRelay: tls })
  s.m.setPeers([{ wgKey: PEER, endpoints: ['198.51.100.2:41641'] }])
  t.same(udp.requested, [PEER], 'a UDP relay allocation is requested at once')
  await new Promise(resolve => setImmediate(resolve))
  t.same(s.m.path(PEER), { kind: 'tls-relay', endpoint: '127.0.0.1:40000' })
  udp.grant(PEER, '192.0.2.10:40000')
  t.same(s.m.path(PEER), { kind: 'udp-relay', endpoint: '192.0.2.10:40000' }, 'the UDP relay wins once bound')
  t.same(tls.released, [PEER], 'the loopback endpoint is given back')
  s.answer(() => 3)
  s.run(2000)
  t.equal(s.m.path(PEER)?.kind, 'direct', 'and a direct path wins over both')
  t.equal(s.m.path(PEER)?.endpoint, '198.51.100.2:41641')
})

t.test('two candidates that answer: the LAN address wins even when slower', async t => {
  const s = sim()
  s.m.setPeers([{ wgKey: PEER, endpoints: ['198.51.100.2:41641', '192.168.1.7:41641'] }])
  s.answer(to => to.startsWith('192.168') ? 9 : 2)
  s.run(3000)
  t.same(s.m.path(PEER), { kind: 'direct', endpoint: '192.168.1.7:41641', latencyMs: 9 })
})

t.test('a direct path is heartbeaten; when it stops answering the relay takes over within 6 s, and direct comes back with backoff', async t => {
  const udp = createFakeUdpRelayClient()
  const { s, setUp } = relayThenDirect(t, { udpRelay: udp })
  const beats = s.sent.filter(x => x.ttl === undefined && x.at > 6000)
  t.ok(beats.length >= 2 && beats.length <= 3, `heartbeats every 2 s (${beats.length} in 4 s)`)
  setUp(false)
  const cut = s.now
  let switched: number | undefined
  s.run(cut + 60_000, () => { if (switched === undefined && s.m.path(PEER)?.kind === 'udp-relay') switched = s.now })
  t.ok(switched !== undefined && switched - cut <= 6000, `back on the relay ${String(switched! - cut)} ms after the cut`)
  // Each burst since the loss called the peer in as it started, with a quiet time between bursts.
  const T = DEFAULT_PATH_TIMINGS
  const calls = s.calls.filter(at => at >= cut)
  t.same(calls, [switched, switched! + T.burstMs + T.retryMs], 'a burst at once when the path is lost, and a retry after retryMs')
  const retries = s.sent.filter(x => x.at > switched! + T.burstMs)
  t.ok(retries.every(x => x.at >= calls[1]! && x.at < calls[1]! + T.burstMs), 'nothing is probed between the bursts')
  t.ok(retries.filter(x => x.ttl === undefined).every(x => x.at >= calls[1]! + T.punchDelayMs), 'full pings a punch delay after the call')
  setUp(true)
  s.run(s.now + 2 * T.retryMs + T.burstMs)
  t.equal(s.m.path(PEER)?.kind, 'direct', 'upgraded again once the direct path answers')
})

/** burstStarts are the times a burst began: the first probe after a quiet second. */
function burstStarts (sent: Sent[]): number[] {
  return sent.filter((x, i) => i === 0 || x.at - sent[i - 1]!.at > 1000 + DEFAULT_PATH_TIMINGS.burstStepMs).map(x => x.at)
}

t.test('while no direct path is found, each burst calls the peer in and the retries back off up to retryMaxMs; a change starts over', async t => {
  const T = DEFAULT_PATH_TIMINGS
  const s = sim()
  s.m.setPeers([{ wgKey: PEER, endpoints: ['198.51.100.2:41641'] }])
  s.run(30 * 60_000)
  const starts = burstStarts(s.sent)
  t.same(s.calls, starts, 'every burst called the peer in as it started')
  const gaps = starts.slice(1).map((at, i) => at - starts[i]! - T.burstMs)
  t.same(gaps.slice(0, 5), [T.retryMs, 2 * T.retryMs, 4 * T.retryMs, T.retryMaxMs, T.retryMaxMs], 'the waits double up to retryMaxMs')
  t.ok(gaps.every(g => g >= T.retryMs), 'never closer than retryMs: a lone burst\'s spoiled conntrack entries are gone by the next')
  t.ok(starts.length <= 10, `${starts.length} bursts in 30 minutes`)

  const before = s.sent.length
  const changed = s.now
  s.m.setPeers([{ wgKey: PEER, endpoints: ['198.51.100.9:41641'] }])
  s.run(changed + 2 * T.retryMs)
  t.same(s.calls.filter(at => at >= changed), [changed, changed + T.burstMs + T.retryMs], 'new candidates: a burst at once, and short waits again')
  t.equal(s.sent[before]?.at, changed)
})

t.test('a call from the peer starts a burst at once, TTL-limited probes first, without calling back; a running burst lasts as long as the peer\'s', async t => {
  const T = DEFAULT_PATH_TIMINGS
  const s = sim()
  s.m.setPeers([{ wgKey: PEER, endpoints: ['198.51.100.2:41641'] }])
  s.run(20_000)
  const calls = s.calls.length
  const sent = s.sent.length
  s.m.handleCallMeMaybe(PEER)
  s.m.handleCallMeMaybe('C'.repeat(43) + '=')
  s.run(20_000 + T.punchDelayMs)
  const answer = s.sent.slice(sent)
  t.same(answer[0], { to: '198.51.100.2:41641', ttl: PUNCH_TTL, txid: answer[0]!.txid, at: 20_000 }, 'a TTL-limited probe at once')
  t.ok(answer.filter(x => x.ttl === undefined).every(x => x.at >= 20_000 + T.punchDelayMs), 'full pings only a punch delay later')
  t.equal(s.calls.length, calls, 'an answer does not call back')

  s.run(20_000 + 4000)
  s.m.handleCallMeMaybe(PEER)
  s.run(20_000 + 4000 + T.burstMs + T.burstStepMs)
  const last = s.sent.at(-1)!.at
  t.ok(last >= 20_000 + 4000 + T.burstMs - T.burstStepMs, 'a second call during the burst keeps it going as long as the caller\'s')
  t.equal(s.calls.length, calls, 'still without calling back')
})

t.test('a direct path\'s bursts do not call the peer: it answers them already', async t => {
  const { s } = relayThenDirect(t, { udpRelay: createFakeUdpRelayClient() })
  const calls = s.calls.length
  s.run(s.now + 5 * DEFAULT_PATH_TIMINGS.retryMs)
  t.equal(s.m.path(PEER)?.kind, 'direct')
  t.ok(burstStarts(s.sent.filter(x => x.ttl !== undefined)).length > 1, 'it still looks for better candidates')
  t.equal(s.calls.length, calls, 'without a call')
})

t.test('a ping from an address not in the map adds it as a candidate and pings it at once', async t => {
  const s = sim()
  s.m.setPeers([{ wgKey: PEER, endpoints: [] }])
  t.equal(s.m.tick(), Infinity, 'no candidates: nothing to do')
  s.answer(to => to === '203.0.113.9:6000' ? 4 : undefined)
  s.m.handlePing(PEER, { address: '203.0.113.9', port: 6000 })
  s.run(10)
  t.same(s.sent[0], { to: '203.0.113.9:6000', txid: '1', at: 0 }, 'a full ping at once, no punch delay')
  t.same(s.m.path(PEER), { kind: 'direct', endpoint: '203.0.113.9:6000', latencyMs: 4 })
  s.m.setPeers([{ wgKey: PEER, endpoints: ['198.51.100.2:41641'] }])
  t.equal(s.m.path(PEER)?.endpoint, '203.0.113.9:6000', 'a learned candidate survives a map change')
})

t.test('pongs nobody asked for, or from a peer we do not know, change nothing', async t => {
  const s = sim()
  s.m.setPeers([{ wgKey: PEER, endpoints: ['198.51.100.2:41641'] }])
  s.run(3000)
  s.m.handlePong({ peerKey: PEER, txid: '999', from: { address: '198.51.100.2', port: 41641 }, src: { address: '1.1.1.1', port: 1 } })
  s.m.handlePong({ peerKey: 'C'.repeat(43) + '=', txid: '1', from: { address: '198.51.100.2', port: 41641 }, src: { address: '1.1.1.1', port: 1 } })
  t.equal(s.m.path(PEER), undefined)
  s.m.handlePing(PEER, { address: 'not-an-ip', port: 1 })
  s.m.setPeers([])
  t.same([...s.m.endpoints()], [])
  t.equal(s.m.tick(), Infinity, 'a removed peer is forgotten')
})

t.test('full pings wait until the peer can know our own latest candidates (order does not matter)', async t => {
  const s = sim()
  s.m.setSelfEndpoints(['10.0.0.1:41641'])
  s.m.setPeers([{ wgKey: PEER, endpoints: ['198.51.100.2:41641'] }])
  s.run(500)
  s.m.setSelfEndpoints(['203.0.113.1:41641', '10.0.0.1:41641'])
  s.m.setSelfEndpoints(['10.0.0.1:41641', '203.0.113.1:41641'])
  s.run(1400)
  t.notOk(s.sent.some(x => x.ttl === undefined), 'no full ping within the punch delay after our candidates changed')
  s.run(1600)
  t.ok(s.sent.some(x => x.ttl === undefined))
})

t.test('while our own candidates are unsettled (STUN pending) only TTL-limited probes go out', async t => {
  let settled = false
  const s = sim({ settled: () => settled })
  s.m.setPeers([{ wgKey: PEER, endpoints: ['198.51.100.2:41641'] }])
  s.run(20_000)
  t.ok(s.sent.length > 0 && s.sent.every(x => x.ttl === PUNCH_TTL), 'TTL-limited probes only')
  settled = true
  s.m.setSelfEndpoints(['10.0.0.1:41641', '203.0.113.1:41641'])
  s.run(s.now + DEFAULT_PATH_TIMINGS.punchDelayMs)
  t.ok(s.sent.some(x => x.ttl === undefined), 'full pings once settled, after the punch delay')
})

t.test('an offline peer is not probed until it comes back', async t => {
  const s = sim()
  s.m.setPeers([{ wgKey: PEER, endpoints: ['198.51.100.2:41641'], online: false }])
  t.equal(s.m.tick(), Infinity, 'nothing due')
  s.run(100_000)
  t.same(s.sent, [])
  s.m.setPeers([{ wgKey: PEER, endpoints: ['198.51.100.2:41641'], online: true }])
  s.run(s.now + 10)
  t.ok(s.sent.length > 0, 'probed at once when it is back')
})

const turn = async (): Promise<void> => { await new Promise(resolve => setImmediate(resolve)) }

t.test('the TLS relay is not used while its connection is down, and is used again once it is back', async t => {
  const tls = createFakeTlsRelayClient({ connected: false })
  const s = sim({ tlsRelay: tls })
  s.m.setPeers([{ wgKey: PEER, endpoints: ['198.51.100.2:41641'] }])
  await turn()
  t.ok(tls.open.has(PEER), 'the loopback endpoint is opened anyway, so the relay hears of the peer when it connects')
  t.equal(s.m.path(PEER), undefined, 'down: no path (WireGuard keeps the map endpoint) rather than a loopback port that carries nothing')
  t.same([...s.m.endpoints()], [])
  tls.setConnected(true)
  t.same(s.m.path(PEER), { kind: 'tls-relay', endpoint: '127.0.0.1:40000' }, 'chosen as soon as it connects')
  const changes = s.changes
  tls.setConnected(false)
  t.equal(s.m.path(PEER), undefined, 'left as soon as it goes down')
  t.equal(s.changes, changes + 1, 'and the daemon hears of it')
  t.same(tls.released, [], 'the endpoint stays open while down')
  tls.setConnected(true)
  t.equal(s.m.path(PEER)?.endpoint, '127.0.0.1:40000', 'the same endpoint again')
  s.m.close()
  tls.setConnected(false)
  tls.setConnected(true)
  t.same(tls.released, [PEER], 'closing gives the endpoint back')
})

t.test('a pair moved to another TLS relay: the path follows to the new loopback endpoint', async t => {
  const tls = createFakeTlsRelayClient()
  const s = sim({ tlsRelay: tls })
  s.m.setPeers([{ wgKey: PEER, endpoints: ['198.51.100.2:41641'] }])
  await turn()
  t.same(s.m.path(PEER), { kind: 'tls-relay', endpoint: '127.0.0.1:40000' })
  const changes = s.changes
  tls.move(PEER)
  await turn()
  t.same(s.m.path(PEER), { kind: 'tls-relay', endpoint: '127.0.0.1:40001' }, 'on the endpoint the new relay opened')
  t.ok(s.changes > changes, 'and the daemon hears of it')
  tls.move('C'.repeat(43) + '=')
  await turn()
  t.same(tls.released, [PEER], 'a move of a peer the manager does not know changes nothing')
  s.m.close()
})

t.test('a UDP relay allocation is released once the direct path held for a while, and asked for again when a heartbeat goes unanswered', async t => {
  const T = DEFAULT_PATH_TIMINGS
  const udp = createFakeUdpRelayClient()
  const { s, setUp } = relayThenDirect(t, { udpRelay: udp, tlsRelay: createFakeTlsRelayClient() })
  s.run(T.udpRelayIdleMs - 1000)
  t.same(udp.released, [], 'kept while the direct path is young')
  s.run(T.udpRelayIdleMs + 10_000)
  t.same(udp.released, [PEER], 'released once the direct path held for udpRelayIdleMs')
  await turn()
  t.equal(udp.endpoint(PEER), undefined, 'the allocation is gone')
  t.equal(s.m.path(PEER)?.kind, 'direct', 'the path stays direct')
  s.run(s.now + 60_000)
  t.same(udp.requested, [PEER], 'not asked for again while the direct path answers')

  setUp(false)
  const cut = s.now
  let askedAt: number | undefined
  s.run(cut + 6000, () => { if (askedAt === undefined && udp.wanted(PEER)) askedAt = s.now })
  t.ok(askedAt !== undefined && askedAt - cut < T.trustMs, `asked for again ${String(askedAt! - cut)} ms after the cut, before the direct path is given up`)
  await turn()
  t.equal(s.m.path(PEER)?.kind, 'tls-relay', 'the TLS relay carries the peer until the new grant comes')
  udp.grant(PEER, '192.0.2.10:40002')
  t.same(s.m.path(PEER), { kind: 'udp-relay', endpoint: '192.0.2.10:40002' }, 'then the UDP relay')

  setUp(true)
  s.run(s.now + 2 * T.retryMs + T.burstMs)
  t.equal(s.m.path(PEER)?.kind, 'direct', 'direct again')
  const released = udp.released.length
  s.run(s.now + T.udpRelayIdleMs + 10_000)
  t.equal(udp.released.length, released + 1, 'and released again after a stable while')
  s.m.setPeers([])
  t.equal(udp.released.length, released + 1, 'a removed peer with nothing held releases nothing')
})

t.test('a removed peer gives its UDP relay allocation back', async t => {
  const udp = createFakeUdpRelayClient()
  const s = sim({ udpRelay: udp })
  s.m.setPeers([{ wgKey: PEER, endpoints: ['198.51.100.2:41641'] }])
  t.ok(udp.wanted(PEER))
  s.m.setPeers([])
  t.notOk(udp.wanted(PEER))
  t.same(udp.released, [PEER])
})

t.test('tick() visits only peers with something due: a thousand relayed peers cost nothing while one is heartbeaten', async t => {
  const udp = createFakeUdpRelayClient()
  let looks = 0
  const endpoint = udp.endpoint
  udp.endpoint = k => { looks++; return endpoint(k) }
  const s = sim({ udpRelay: udp })
  const others = Array.from({ length: 1000 }, (_, i) => ({ wgKey: `peer-${i}`, endpoints: [] }))
  for (const o of others) udp.grant(o.wgKey, `192.0.2.10:${41000 + others.indexOf(o)}`)
  s.answer(() => 5)
  s.m.setPeers([{ wgKey: PEER, endpoints: ['198.51.100.2:41641'] }, ...others])
  s.run(100)
  t.equal(s.m.path('peer-7')?.kind, 'udp-relay')
  looks = 0
  let ticks = 0
  const started = performance.now()
  s.run(60_000, () => ticks++)
  const ms = performance.now() - started
  t.equal(s.m.path(PEER)?.kind, 'direct')
  t.ok(ticks >= 30, `the heartbeated peer makes tick() run (${ticks} times)`)
  t.ok(looks < 10, `the relayed peers were not looked at (${looks} relay look-ups in ${ticks} ticks)`)
  t.ok(ms < 2000, `${ticks} ticks over 1001 peers took ${ms.toFixed(0)} ms`)
})
