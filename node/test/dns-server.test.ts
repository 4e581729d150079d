import t, { type Test } from 'tap'
import dgram from 'node:dgram'
import net from 'node:net'
import { randomBytes } from 'node:crypto'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import dnsPacket, { type Answer, type DecodedPacket, type Packet } from 'dns-packet'
import { applyDelta } from '@warren/protocol'
import { createMeshRecordStore } from '../src/dns/records.js'
import { createMagicDnsServer, parseUpstream, type MagicDnsServerOptions } from '../src/dns/server.js'
import { testNetmap, type TestHost } from '../src/testing.js'

const self: TestHost = { name: 'laptop', ipv4: '100.64.0.1', ipv6: 'fd7a:115c:a1e0:ab12::1' }
const db: TestHost = { name: 'db', ipv4: '100.64.0.2', ipv6: 'fd7a:115c:a1e0:ab12::2' }
const web: TestHost = { name: 'web', ipv4: '100.64.0.3', ipv6: 'fd7a:115c:a1e0:ab12::3' }
const netmap = testNetmap(self, [db, web])

const BIG_COUNT = 60

/** FakeUpstream is a tiny DNS server on 127.0.0.1 standing in for the host's resolver. */
interface FakeUpstream { address: string, udpQueries: DecodedPacket[], tcpQueries: DecodedPacket[], close: () => Promise<void> }

/**
 * startFakeUpstream answers `example.com` A 192.0.2.1, `fail.example` SERVFAIL,
 * `big.example` truncated over UDP and with BIG_COUNT A records over TCP, and never
 * answers `silent.example` (or anything, with `silent`).
 */
async function startFakeUpstream (opts: { silent?: boolean } = {}): Promise<FakeUpstream> {
  const udpQueries: DecodedPacket[] = []
  const tcpQueries: DecodedPacket[] = []
  const answer = (q: DecodedPacket, tcp: boolean): Buffer | undefined => {
    const name = q.questions?.[0]?.name ?? ''
    if (opts.silent === true || name === 'silent.example') return undefined
    const base = { type: 'response' as const, id: q.id, flags: dnsPacket.RECURSION_AVAILABLE, questions: q.questions }
    if (name === 'fail.example') return dnsPacket.encode({ ...base, flags: 2 })
    if (name === 'big.example') {
      if (!tcp) return dnsPacket.encode({ ...base, flags: dnsPacket.TRUNCATED_RESPONSE })
      const answers: Answer[] = []
      for (let i = 0; i < BIG_COUNT; i++) answers.push({ name, type: 'A', ttl: 60, data: `198.51.100.${i}` })
      return dnsPacket.encode({ ...base, answers })
    }
    return dnsPacket.encode({ ...base, answers: [{ name, type: 'A', ttl: 60, data: '192.0.2.1' }] })
  }
  const onQuery = (udp: dgram.Socket) => (msg: Buffer, rinfo: dgram.RemoteInfo): void => {
    const q = dnsPacket.decode(msg)
    udpQueries.push(q)
    const reply = answer(q, false)
    if (reply !== undefined) udp.send(reply, rinfo.port, rinfo.address)
  }
  const tcp = net.createServer(sock => {
    sock.on('error', () => {})
    sock.on('data', chunk => {
      const q = dnsPacket.decode(chunk.subarray(2))
      tcpQueries.push(q)
      const reply = answer(q, true)
      if (reply !== undefined) sock.write(dnsPacket.streamEncode(dnsPacket.decode(reply)))
    })
  })
  // UDP picks a free port; TCP then needs the same number, which another test's socket may
  // hold: pick again until both are ours.
  let udp: dgram.Socket | undefined
  let port = 0
  for (let attempt = 0; udp === undefined; attempt++) {
    const u = dgram.createSocket('udp4')
    u.on('message', onQuery(u))
    await new Promise<void>(resolve => u.bind(0, '127.0.0.1', () => resolve()))
    port = u.address().port
    const listened = await new Promise<Error | undefined>(resolve => {
      tcp.once('error', resolve)
      tcp.listen(port, '127.0.0.1', () => { tcp.off('error', resolve); resolve(undefined) })
    })
    if (listened === undefined) udp = u
    else {
      u.close()
      if ((listened as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= 20) throw listened
    }
  }
  const udpSocket = udp
  return {
    address: `127.0.0.1:${port}`,
    udpQueries,
    tcpQueries,
    close: async () => {
      udpSocket.close()
      await new Promise<void>(resolve => tcp.close(() => resolve()))
    }
  }
}

/** deadUpstream is a local port where nothing listens (the kernel refuses at once). */
async function deadUpstream (): Promise<string> {
  const s = dgram.createSocket('udp4')
  await new Promise<void>(resolve => s.bind(0, '127.0.0.1', () => resolve()))
  const port = s.address().port
  await new Promise<void>(resolve => s.close(() => resolve()))
  return `127.0.0.1:${port}`
}

/** Reply is a decoded response; dns-packet sets rcode, its types do not say so. */
type Reply = DecodedPacket & { rcode: string }

function query (name: string, type: string, extra: Partial<Packet> = {}): Packet {
  return { type: 'query', id: Math.floor(Math.random() * 65536), flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: type as 'A', name }], ...extra }
}

async function udpAsk (port: number, q: Packet | Buffer, timeoutMs = 60_000): Promise<Reply> {
  const sock = dgram.createSocket('udp4')
  try {
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no UDP reply')), timeoutMs)
      sock.on('message', msg => { clearTimeout(timer); resolve(dnsPacket.decode(msg) as Reply) })
      sock.send(Buffer.isBuffer(q) ? q : dnsPacket.encode(q), port, '127.0.0.1')
    })
  } finally {
    sock.close()
  }
}

/** tcpAsk sends every query on one connection and collects the replies by id. */
async function tcpAsk (port: number, qs: Packet[]): Promise<Map<number, Reply>> {
  const sock = net.connect(port, '127.0.0.1')
  const replies = new Map<number, Reply>()
  try {
    return await new Promise((resolve, reject) => {
      let buf = Buffer.alloc(0)
      const timer = setTimeout(() => reject(new Error(`only ${replies.size} of ${qs.length} TCP replies`)), 60_000)
      sock.on('error', reject)
      sock.on('connect', () => sock.write(Buffer.concat(qs.map(q => dnsPacket.streamEncode(q)))))
      sock.on('data', chunk => {
        buf = Buffer.concat([buf, chunk])
        while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          const msg = dnsPacket.decode(buf.subarray(2, 2 + buf.readUInt16BE(0))) as Reply
          buf = buf.subarray(2 + buf.readUInt16BE(0))
          replies.set(msg.id!, msg)
        }
        if (replies.size === qs.length) { clearTimeout(timer); resolve(replies) }
      })
    })
  } finally {
    sock.destroy()
  }
}

const dataOf = (p: DecodedPacket): unknown[] => (p.answers ?? []).map(a => (a as { data: unknown }).data)

async function startServer (t: Test, extra: Partial<MagicDnsServerOptions> = {}): Promise<{ port: number, store: ReturnType<typeof createMeshRecordStore>, server: ReturnType<typeof createMagicDnsServer> }> {
  const store = createMeshRecordStore()
  store.update(netmap)
  const server = createMagicDnsServer({ listen: [{ address: '127.0.0.1', port: 0 }], records: store, upstreamTimeoutMs: 500, ...extra })
  const [bound] = await server.start()
  t.teardown(() => server.close())
  return { port: bound!.port, store, server }
}

t.test('A, AAAA and PTR for mesh names over UDP, authoritative, with the client id', async t => {
  const { port } = await startServer(t)
  const q = query('db.warren.internal', 'A')
  const a = await udpAsk(port, q)
  t.equal(a.id, q.id)
  t.equal(a.rcode, 'NOERROR')
  t.ok(a.flag_aa, 'authoritative')
  t.same(dataOf(a), ['100.64.0.2'])
  t.same(dataOf(await udpAsk(port, query('web.warren.internal', 'AAAA'))), ['fd7a:115c:a1e0:ab12::3'])
  t.same(dataOf(await udpAsk(port, query('2.0.64.100.in-addr.arpa', 'PTR'))), ['db.warren.internal'])
  t.same(dataOf(await udpAsk(port, query('1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.2.1.b.a.0.e.1.a.c.5.1.1.a.7.d.f.ip6.arpa', 'PTR'))), ['laptop.warren.internal'])
})

t.test('names are case-insensitive and the question comes back as asked', async t => {
  const { port } = await startServer(t)
  const a = await udpAsk(port, query('DB.Warren.INTERNAL', 'A'))
  t.same(dataOf(a), ['100.64.0.2'])
  t.equal(a.questions?.[0]?.name, 'DB.Warren.INTERNAL')
  t.equal(a.answers?.[0]?.name, 'DB.Warren.INTERNAL')
})

t.test('unknown mesh names get NXDOMAIN; a known name of another type gets NODATA with the SOA', async t => {
  const { port } = await startServer(t)
  const nx = await udpAsk(port, query('ghost.warren.internal', 'A'))
  t.equal(nx.rcode, 'NXDOMAIN')
  t.equal(nx.authorities?.[0]?.type, 'SOA')
  const nodata = await udpAsk(port, query('db.warren.internal', 'MX'))
  t.equal(nodata.rcode, 'NOERROR')
  t.same(nodata.answers, [])
  t.equal(nodata.authorities?.[0]?.type, 'SOA')
})

t.test('answers follow the map live: a removed peer becomes NXDOMAIN, a new one resolves', async t => {
  const { port, store } = await startServer(t)
  t.same(dataOf(await udpAsk(port, query('web.warren.internal', 'A'))), ['100.64.0.3'])
  store.update(applyDelta(netmap, { type: 'delta', seq: 2, peersRemoved: ['web'] }))
  t.equal((await udpAsk(port, query('web.warren.internal', 'A'))).rcode, 'NXDOMAIN')
  t.equal((await udpAsk(port, query('3.0.64.100.in-addr.arpa', 'PTR'))).rcode, 'NXDOMAIN')
  t.same(dataOf(await udpAsk(port, query('db.warren.internal', 'A'))), ['100.64.0.2'])
})

t.test('TCP: several queries on one connection, mesh and forwarded', async t => {
  const up = await startFakeUpstream()
  t.teardown(up.close)
  const { port } = await startServer(t, { upstreams: [up.address] })
  const qs = [query('db.warren.internal', 'A'), query('laptop.warren.internal', 'AAAA'), query('example.com', 'A'), query('nope.warren.internal', 'A')]
  const replies = await tcpAsk(port, qs)
  t.same(dataOf(replies.get(qs[0]!.id!)!), ['100.64.0.2'])
  t.same(dataOf(replies.get(qs[1]!.id!)!), ['fd7a:115c:a1e0:ab12::1'])
  t.same(dataOf(replies.get(qs[2]!.id!)!), ['192.0.2.1'])
  t.equal(replies.get(qs[3]!.id!)!.rcode, 'NXDOMAIN')
})

t.test('other names are forwarded upstream with the client id kept; mesh names never leave', async t => {
  const up = await startFakeUpstream()
  t.teardown(up.close)
  const { port, server } = await startServer(t, { upstreams: [up.address] })
  const q = query('example.com', 'A', { id: 4242 })
  const a = await udpAsk(port, q)
  t.equal(a.id, 4242)
  t.equal(a.rcode, 'NOERROR')
  t.same(dataOf(a), ['192.0.2.1'])
  t.equal(up.udpQueries.length, 1)
  await udpAsk(port, query('ghost.warren.internal', 'A'))
  t.equal(up.udpQueries.length, 1, 'the mesh domain is answered locally, even when unknown')
  t.equal(server.stats().forwarded, 1)
})

t.test('a dead or silent upstream is skipped for the next one', async t => {
  const silent = await startFakeUpstream({ silent: true })
  const up = await startFakeUpstream()
  t.teardown(silent.close)
  t.teardown(up.close)
  const { port } = await startServer(t, { upstreams: [await deadUpstream(), silent.address, up.address], upstreamTimeoutMs: 300 })
  const a = await udpAsk(port, query('example.com', 'A'))
  t.same(dataOf(a), ['192.0.2.1'])
  t.equal(silent.udpQueries.length, 1, 'the silent one was asked first')
  // SERVFAIL from an upstream is also a reason to try the next.
  const { port: port2 } = await startServer(t, { upstreams: [up.address, up.address] })
  t.equal((await udpAsk(port2, query('fail.example', 'A'))).rcode, 'SERVFAIL')
  t.equal(up.udpQueries.filter(q => q.questions?.[0]?.name === 'fail.example').length, 2)
})

t.test('SERVFAIL when every upstream fails, or there is none', async t => {
  // Upstreams that are waited for would outlive the test: only a refusal can answer this query.
  const { port, server } = await startServer(t, { upstreams: [await deadUpstream(), await deadUpstream()], upstreamTimeoutMs: 600_000 })
  const start = Date.now()
  const a = await udpAsk(port, query('example.com', 'A', { id: 7 }))
  t.equal(a.rcode, 'SERVFAIL', 'refused ports fail at once, not after a timeout')
  t.equal(a.id, 7)
  t.comment(`answered after ${Date.now() - start} ms`)
  server.setUpstreams([])
  t.equal((await udpAsk(port, query('example.com', 'A'))).rcode, 'SERVFAIL')
  t.same(dataOf(await udpAsk(port, query('db.warren.internal', 'A'))), ['100.64.0.2'], 'mesh names still work')
  t.throws(() => server.setUpstreams(['not-an-ip']), { code: 'bad_upstream' })
  t.same(server.upstreams, [], 'a bad list changes nothing')
  t.throws(() => server.setUpstreams([`127.0.0.1:${port}`]), { code: 'upstream_loop' }, 'forwarding to itself is refused')
})

t.test('truncated upstream answers: TCP fallback; a UDP client gets TC when it does not fit', async t => {
  const up = await startFakeUpstream()
  t.teardown(up.close)
  const { port } = await startServer(t, { upstreams: [up.address] })
  const small = await udpAsk(port, query('big.example', 'A'))
  t.ok(small.flag_tc, '60 records do not fit 512 bytes: TC set')
  t.equal(up.tcpQueries.length, 1, 'the server tried TCP upstream')
  const edns = await udpAsk(port, query('big.example', 'A', { additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 4096 } as unknown as Answer] }))
  t.notOk(edns.flag_tc, 'with EDNS 4096 the TCP answer fits in UDP')
  t.equal(edns.answers?.length, BIG_COUNT)
  const q = query('big.example', 'A')
  const viaTcp = (await tcpAsk(port, [q])).get(q.id!)!
  t.notOk(viaTcp.flag_tc)
  t.equal(viaTcp.answers?.length, BIG_COUNT, 'over TCP the client gets every record')
})

t.test('malformed input is dropped without crashing; the server keeps answering', async t => {
  const { port, server } = await startServer(t)
  const client = dgram.createSocket('udp4')
  t.teardown(() => client.close())
  const junk: Buffer[] = [Buffer.alloc(0), Buffer.alloc(5), Buffer.alloc(12, 0xff), randomBytes(9000)]
  for (let i = 0; i < 300; i++) junk.push(randomBytes(1 + Math.floor(Math.random() * 600)))
  // Valid header, lying counts.
  const lying = dnsPacket.encode(query('db.warren.internal', 'A'))
  lying.writeUInt16BE(0xffff, 4)
  junk.push(lying)
  // A response (QR set) is never answered.
  junk.push(dnsPacket.encode({ type: 'response', id: 1, questions: [{ type: 'A', name: 'db.warren.internal' }] }))
  const until = async (cond: () => boolean): Promise<void> => {
    const deadline = Date.now() + 60_000
    while (!cond() && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 2))
  }
  // Small batches, so the loopback socket buffer does not drop any.
  for (let i = 0; i < junk.length; i += 20) {
    const batch = junk.slice(i, i + 20)
    for (const b of batch) client.send(b, port, '127.0.0.1')
    await until(() => server.stats().queries >= Math.min(i + 20, junk.length))
  }
  // Junk over TCP: a random frame is dropped, a length over the limit closes the connection.
  await new Promise<void>(resolve => {
    const s = net.connect(port, '127.0.0.1', () => s.write(Buffer.concat([Buffer.from([0x00, 0x20]), randomBytes(32), Buffer.from([0xff, 0xff]), randomBytes(100)])))
    s.on('error', () => {})
    s.on('close', () => resolve())
  })
  await until(() => server.stats().dropped >= junk.length + 2)
  t.equal(server.stats().dropped, junk.length + 2, 'every junk message was dropped, none answered')
  t.same(dataOf(await udpAsk(port, query('db.warren.internal', 'A'))), ['100.64.0.2'], 'still answering')
  const notimp = await udpAsk(port, { ...query('db.warren.internal', 'A'), flags: 2 << 11 })
  t.equal(notimp.rcode, 'NOTIMP', 'opcodes other than QUERY are refused clearly')
})

t.test('bounded work: in-flight forwards are capped and idle TCP connections are closed', async t => {
  const silent = await startFakeUpstream({ silent: true })
  t.teardown(silent.close)
  const { port, server } = await startServer(t, { upstreams: [silent.address], maxInFlight: 1, upstreamTimeoutMs: 5000, tcpIdleTimeoutMs: 200 })
  const slow = udpAsk(port, query('a.example', 'A'))
  const deadline = Date.now() + 60_000
  while (server.stats().inFlight < 1 && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 5))
  const over = udpAsk(port, query('b.example', 'A'))
  const first = await Promise.race([over.then(() => 'over the cap'), slow.then(() => 'the forwarded one')])
  t.equal(first, 'over the cap', 'over the cap the answer does not wait for the forwarded query')
  t.equal((await over).rcode, 'SERVFAIL')
  t.equal(server.stats().overloaded, 1)
  t.equal((await slow).rcode, 'SERVFAIL')

  const opened = Date.now()
  await new Promise<void>(resolve => {
    const s = net.connect(port, '127.0.0.1')
    s.on('error', () => {})
    s.on('close', () => resolve())
  })
  t.pass('the idle connection was closed by the server')
  t.comment(`closed after ${Date.now() - opened} ms`)
})

t.test('parseUpstream reads ip, ip:port and [ipv6]:port', async t => {
  t.same(parseUpstream('192.0.2.53'), { host: '192.0.2.53', port: 53, family: 4, text: '192.0.2.53' })
  t.same(parseUpstream('127.0.0.1:5353').port, 5353)
  t.same(parseUpstream('2001:db8::1'), { host: '2001:db8::1', port: 53, family: 6, text: '2001:db8::1' })
  t.same(parseUpstream('[2001:db8::1]:54').port, 54)
  for (const bad of ['', 'dns.google', '1.2.3.4:0', '1.2.3.4:x', '[::1]:70000']) t.throws(() => parseUpstream(bad), { code: 'bad_upstream' }, bad)
})

t.test('listening twice on one port is a clear error', async t => {
  const { port } = await startServer(t)
  const again = createMagicDnsServer({ listen: [{ address: '127.0.0.1', port }], records: createMeshRecordStore() })
  await t.rejects(again.start(), { code: 'dns_listen_failed' })
  t.throws(() => createMagicDnsServer({ listen: [{ address: '127.0.0.1', port: 5353 }], upstreams: ['127.0.0.1:5353'], records: createMeshRecordStore() }), { code: 'upstream_loop' })
})

const dig = await promisify(execFile)('dig', ['-v']).then(() => true, () => false)
t.test('dig resolves mesh names over UDP and TCP', { skip: dig ? false : 'dig is not installed' }, async t => {
  const { port } = await startServer(t)
  const run = async (...args: string[]): Promise<string> =>
    (await promisify(execFile)('dig', ['@127.0.0.1', '-p', String(port), '+time=2', '+tries=1', ...args])).stdout
  t.equal((await run('+short', 'db.warren.internal')).trim(), '100.64.0.2')
  t.equal((await run('+short', '+tcp', 'laptop.warren.internal', 'AAAA')).trim(), 'fd7a:115c:a1e0:ab12::1')
  t.equal((await run('+short', '-x', '100.64.0.3')).trim(), 'web.warren.internal.')
  t.match(await run('ghost.warren.internal'), /status: NXDOMAIN/)
})
