import t from 'tap'
import fc from 'fast-check'
import dnsPacket, { type Answer, type DecodedPacket, type Question } from 'dns-packet'
import { createMagicDnsServer } from '../src/dns/server.js'
import { createMeshRecordStore } from '../src/dns/records.js'
import { testNetmap } from '../src/testing.js'

/**
 * The MagicDNS packet handler fed random bytes and mutated valid queries, through the
 * same entry the UDP and TCP listeners use: it never throws, and every packet gets either
 * no answer or a well-formed DNS response to that query. The seed is fixed so a failure
 * replays; WARREN_FUZZ_RUNS and WARREN_FUZZ_SEED explore further.
 */
const RUNS = { seed: Number(process.env.WARREN_FUZZ_SEED ?? 0x3a9d), numRuns: Number(process.env.WARREN_FUZZ_RUNS ?? 1000) }

const RCODES = new Set(['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED'])
/** MAX_UDP_REPLY is the largest UDP reply any client may ask for (EDNS, capped by the server). */
const MAX_UDP_REPLY = 4096

const store = createMeshRecordStore()
store.update(testNetmap({ name: 'self', ipv4: '100.64.0.1', ipv6: 'fd7a:115c:a1e0::1' }, [
  { name: 'db', ipv4: '100.64.0.2', ipv6: 'fd7a:115c:a1e0::2' },
  { name: 'web', ipv4: '100.64.0.3', ipv6: 'fd7a:115c:a1e0::3' }
]))
// No upstreams: names outside the mesh get SERVFAIL at once, so no case waits on a socket.
const server = createMagicDnsServer({ listen: [], records: store })
t.teardown(() => server.close())

type Reply = DecodedPacket & { rcode?: string }

/** wellFormed says what is wrong with a reply to `query`, or undefined when nothing is. */
function wellFormed (query: Buffer, reply: Buffer, transport: 'udp' | 'tcp'): string | undefined {
  let r: Reply
  try {
    r = dnsPacket.decode(reply) as Reply
  } catch (e) {
    return `the reply does not decode: ${(e as Error).message}`
  }
  if (r.type !== 'response') return 'the reply is not a response'
  if (reply.readUInt16BE(0) !== query.readUInt16BE(0)) return 'the reply carries another id'
  if (!RCODES.has(r.rcode ?? '')) return `unexpected rcode ${String(r.rcode)}`
  if (transport === 'udp' && reply.length > MAX_UDP_REPLY) return `a ${reply.length}-byte UDP reply`
  if (transport === 'tcp' && reply.length > 0xffff) return 'a TCP reply longer than its length prefix allows'
  return undefined
}

async function check (query: Buffer, transport: 'udp' | 'tcp'): Promise<void> {
  const reply = await server.answer(query, transport)
  if (reply === undefined) return
  const wrong = wellFormed(query, reply, transport)
  if (wrong !== undefined) throw new Error(`${wrong} (query ${query.toString('hex')})`)
}

const NAMES = [
  'db.warren.internal', 'DB.Warren.Internal', 'nope.warren.internal', 'warren.internal', 'self.warren.internal',
  '2.0.64.100.in-addr.arpa', '2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.e.1.a.c.5.1.1.a.7.d.f.ip6.arpa',
  'example.com', '.', 'a'.repeat(63) + '.warren.internal'
]
const TYPES = ['A', 'AAAA', 'PTR', 'TXT', 'ANY', 'MX', 'SRV', 'CNAME', 'NS', 'SOA', 'HTTPS'] as const

const validQuery = fc.record({
  id: fc.integer({ min: 0, max: 0xffff }),
  flags: fc.integer({ min: 0, max: 0xffff }).map(f => f & ~0x8000),
  name: fc.constantFrom(...NAMES),
  type: fc.constantFrom(...TYPES),
  klass: fc.constantFrom('IN', 'CH', 'ANY'),
  edns: fc.option(fc.integer({ min: 0, max: 0xffff }), { nil: undefined })
}).map(q => dnsPacket.encode({
  type: 'query',
  id: q.id,
  flags: q.flags,
  questions: [{ name: q.name, type: q.type, class: q.klass } as Question],
  additionals: q.edns === undefined ? [] : [{ type: 'OPT', name: '.', udpPayloadSize: q.edns } as unknown as Answer]
}))

/** A mutation of an encoded message: bytes overwritten, cut off, appended, or a header count changed. */
const mutation = fc.oneof(
  fc.record({ op: fc.constant('set' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ op: fc.constant('cut' as const), at: fc.nat() }),
  fc.record({ op: fc.constant('append' as const), bytes: fc.uint8Array({ maxLength: 64 }) }),
  fc.record({ op: fc.constant('count' as const), field: fc.integer({ min: 0, max: 3 }), value: fc.integer({ min: 0, max: 0xffff }) })
)

function mutate (msg: Buffer, steps: Array<typeof mutation extends fc.Arbitrary<infer M> ? M : never>): Buffer {
  let out = Buffer.from(msg)
  for (const m of steps) {
    if (m.op === 'set' && out.length > 0) out[m.at % out.length] = m.value
    else if (m.op === 'cut') out = out.subarray(0, m.at % (out.length + 1))
    else if (m.op === 'append') out = Buffer.concat([out, m.bytes])
    else if (m.op === 'count' && out.length >= 12) out.writeUInt16BE(m.value, 4 + 2 * m.field)
  }
  return out
}

const transport = fc.constantFrom('udp' as const, 'tcp' as const)

t.test('random bytes get no answer or a well-formed response', async t => {
  await fc.assert(fc.asyncProperty(fc.uint8Array({ maxLength: 700 }), transport, async (bytes, via) => {
    await check(Buffer.from(bytes), via)
  }), RUNS)
  t.pass(`${RUNS.numRuns} random packets`)
})

t.test('random bytes behind a valid header get no answer or a well-formed response', async t => {
  const header = fc.record({ id: fc.integer({ min: 0, max: 0xffff }), flags: fc.integer({ min: 0, max: 0x7fff }), counts: fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 4, maxLength: 4 }) })
  await fc.assert(fc.asyncProperty(header, fc.uint8Array({ maxLength: 300 }), transport, async (h, body, via) => {
    const head = Buffer.alloc(12)
    head.writeUInt16BE(h.id, 0)
    head.writeUInt16BE(h.flags, 2)
    h.counts.forEach((c, i) => head.writeUInt16BE(c, 4 + 2 * i))
    await check(Buffer.concat([head, body]), via)
  }), RUNS)
  t.pass(`${RUNS.numRuns} packets with a plausible header`)
})

t.test('valid queries are answered with a well-formed response to the same question', async t => {
  await fc.assert(fc.asyncProperty(validQuery, transport, async (query, via) => {
    const reply = await server.answer(query, via)
    if (reply === undefined) return
    const wrong = wellFormed(query, reply, via)
    if (wrong !== undefined) throw new Error(`${wrong} (query ${query.toString('hex')})`)
    const asked = dnsPacket.decode(query).questions ?? []
    const got = (dnsPacket.decode(reply).questions ?? []).map(q => `${q.name.toLowerCase()} ${q.type}`)
    if (got.length > 0 && got.join() !== asked.map(q => `${q.name.toLowerCase()} ${q.type}`).join()) throw new Error(`answered ${got.join()} to ${asked.map(q => q.name).join()}`)
  }), RUNS)
  const db = dnsPacket.decode((await server.answer(dnsPacket.encode({ type: 'query', id: 9, questions: [{ name: 'db.warren.internal', type: 'A' }] }), 'udp'))!) as Reply
  t.same([db.rcode, (db.answers ?? []).map(a => (a as { data?: unknown }).data)], ['NOERROR', ['100.64.0.2']], 'a mesh name still resolves after the fuzzing')
})

t.test('mutated valid queries get no answer or a well-formed response', async t => {
  await fc.assert(fc.asyncProperty(validQuery, fc.array(mutation, { minLength: 1, maxLength: 4 }), transport, async (query, steps, via) => {
    await check(mutate(query, steps), via)
  }), RUNS)
  const before = server.stats()
  t.equal(before.inFlight, 0, 'no query is left in flight')
  t.ok(before.queries > 0 && before.dropped > 0, `the handler saw ${before.queries} queries and dropped ${before.dropped}`)
})

t.test('a question that would not come back as asked gets FORMERR without it', async t => {
  // A byte that is not UTF-8 in a 63-byte label: read back as text it would be a 65-byte label.
  const query = dnsPacket.encode({ type: 'query', id: 77, questions: [{ name: `${'a'.repeat(63)}.warren.internal`, type: 'A' }] })
  query[13] = 0x80
  for (const via of ['udp', 'tcp'] as const) {
    const reply = (await server.answer(query, via))!
    t.equal(wellFormed(query, reply, via), undefined, `${via}: the reply is well-formed`)
    const r = dnsPacket.decode(reply) as Reply
    t.same([r.id, r.rcode, r.questions], [77, 'FORMERR', []], `${via}: FORMERR, the question left out`)
  }
})
