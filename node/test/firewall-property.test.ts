import t from 'tap'
import fc from 'fast-check'
import { filterAllows, protocolHasPorts, type FilterRule } from '@warren/protocol'
import {
  createRulesetCompiler, diffCompiled, diffSets, parseElement, SET_NAMES,
  type SetDiff, type SetElements, type SetName
} from '../src/firewall/ruleset.js'
import { createNftablesFirewall } from '../src/firewall/nftables.js'
import { createFakeFirewall, createFakeNft, type TracePacket } from '../src/testing.js'

// one compiler, as a firewall has: fresh and incremental compiles share its source cache
const { compileFilter, compileIncremental } = createRulesetCompiler()

// Small address and port spaces, so that random rules overlap, nest and touch often.
const v4 = fc.integer({ min: 0, max: 40 }).map(n => `10.0.${n >> 4}.${n & 15}`)
const v6 = fc.integer({ min: 0, max: 40 }).map(n => `fd7a::${n.toString(16)}`)
const src = fc.oneof(
  { weight: 6, arbitrary: fc.tuple(v4, fc.integer({ min: 26, max: 32 })).map(([a, l]) => l === 32 && a.endsWith('1') ? a : `${a}/${l}`) },
  { weight: 4, arbitrary: fc.tuple(v6, fc.integer({ min: 122, max: 128 })).map(([a, l]) => `${a}/${l}`) },
  { weight: 1, arbitrary: fc.constantFrom('*', '0.0.0.0/0', '::/0', '10.0.0.0/8') }
)
const PROTOS = [1, 6, 17, 47, 58, 132]
const port = fc.integer({ min: 0, max: 30 })
const portRange = fc.oneof(
  { weight: 5, arbitrary: fc.tuple(port, fc.integer({ min: 0, max: 6 })).map(([a, w]) => ({ first: a, last: a + w })) },
  { weight: 1, arbitrary: fc.constant({ first: 0, last: 65535 }) }
)
const rule: fc.Arbitrary<FilterRule> = fc.record({
  srcs: fc.array(src, { minLength: 1, maxLength: 3 }),
  protos: fc.uniqueArray(fc.constantFrom(...PROTOS), { minLength: 0, maxLength: 3 }),
  ports: fc.array(portRange, { maxLength: 3 })
})
const filter = fc.array(rule, { maxLength: 6 })
const packet = fc.record({
  src: fc.oneof(v4, v6, fc.constantFrom('10.1.0.1', 'fd7b::1', '192.168.0.1')),
  proto: fc.constantFrom(...PROTOS, 33),
  dport: port
}).map(p => protocolHasPorts(p.proto) ? p : { src: p.src, proto: p.proto })

/** edgePackets probes each rule at its edges: ports just inside and outside, neighbouring protocols. */
function edgePackets (f: FilterRule[]): Array<{ src: string, proto: number, dport?: number }> {
  const out: Array<{ src: string, proto: number, dport?: number }> = []
  for (const r of f) {
    for (const s of r.srcs) {
      const addr = s === '*' ? '10.0.0.1' : s.split('/')[0]!
      for (const proto of [...r.protos, 6, 1]) {
        if (!protocolHasPorts(proto)) { out.push({ src: addr, proto }); continue }
        for (const p of r.ports) for (const dport of [p.first - 1, p.first, p.last, p.last + 1]) if (dport >= 0 && dport <= 65535) out.push({ src: addr, proto, dport })
      }
    }
  }
  return out
}

const IF = 'warren0'
/** verdictOf is what the table must do: let in what the filter allows, reject a new flow it forbids (a TCP SYN, a datagram), drop the rest. */
const verdictOf = (f: FilterRule[], p: { src: string, proto: number, dport?: number, stray?: boolean }): string =>
  filterAllows(f, p) ? 'accept' : protocolHasPorts(p.proto) && !(p.proto === 6 && p.stray === true) ? 'reject' : 'drop'

t.test('the generated ruleset accepts exactly what the filter allows', async t => {
  await fc.assert(fc.asyncProperty(filter, fc.array(packet, { minLength: 1, maxLength: 30 }), async (f, packets) => {
    const fw = createFakeFirewall()
    await fw.set(f, { interfaceName: IF })
    // elements never overlap (nft needs that of interval sets, and it keeps them canonical)
    const els = fw.dump().split('\n').filter(l => l.startsWith('allow')).map(l => {
      const [set, ...rest] = l.split(' ')
      return parseElement(set as SetName, rest.join(' '))
    })
    for (const [i, a] of els.entries()) {
      for (const b of els.slice(i + 1)) {
        const samePorts = a.ports === undefined || b.ports === undefined ? a.ports === b.ports : a.ports[0] <= b.ports[1] && b.ports[0] <= a.ports[1]
        if (a.v6 === b.v6 && a.proto === b.proto && a.lo <= b.hi && b.lo <= a.hi && samePorts) return false
      }
    }
    for (const p of [...packets, ...edgePackets(f)]) {
      const traced: TracePacket = { ...p, iif: IF }
      const want = verdictOf(f, p)
      if (fw.trace(traced) !== want) return false
      if (p.proto === 6 && fw.trace({ ...traced, stray: true }) !== verdictOf(f, { ...p, stray: true })) return false
      // replies in flows this node opened pass whatever the policy says (pings: their echo replies)
      if (fw.trace({ ...traced, flow: 'node', icmpType: p.proto === 1 ? 0 : p.proto === 58 ? 129 : undefined }) !== 'accept') return false
      if (fw.trace({ ...traced, iif: 'eth0' }) !== 'untouched') return false
    }
    return true
  }), { numRuns: 400 })
  t.pass('400 random filters, 30 packets each')
})

t.test('element diffs through nft reach the same ruleset as a fresh build', async t => {
  await fc.assert(fc.asyncProperty(fc.array(filter, { minLength: 2, maxLength: 5 }), fc.array(packet, { maxLength: 20 }), async (filters, packets) => {
    const nft = createFakeNft()
    const fw = createNftablesFirewall({ runner: nft, table: 'wtest' })
    for (const f of filters) {
      await fw.set(f, { interfaceName: IF })
      const fresh = createFakeFirewall()
      await fresh.set(f, { interfaceName: IF })
      if (nft.dump('wtest') !== fresh.dump()) return false
      for (const p of [...packets, ...edgePackets(f)]) if (nft.trace('wtest', { ...p, iif: IF }) !== verdictOf(f, p)) return false
    }
    return nft.calls.filter(c => /^(add|delete) table/m.test(c.input ?? '') && !c.argv.includes('--check')).length === 1
  }), { numRuns: 200 })
  t.pass('after the first build, every change was an element update')
})

/** sorted makes element lists comparable whatever their order. */
const sorted = (sets: SetElements): Record<string, string[]> => Object.fromEntries(SET_NAMES.map(n => [n, [...sets[n]].sort()]))
const sortedDiff = (d: SetDiff): unknown => ({ del: sorted(d.del), add: sorted(d.add), size: d.size })

t.test('incremental compiles and diffs give exactly what fresh compiles and diffs give', async t => {
  // Filters that change a little at a time, as a peer joins, leaves or changes ports, and
  // sometimes a range source appears that swallows or touches single ones.
  const single = fc.integer({ min: 0, max: 40 }).map(n => `10.0.${n >> 4}.${n & 15}`)
  const step = fc.oneof(
    { weight: 4, arbitrary: fc.record({ srcs: fc.array(single, { minLength: 1, maxLength: 3 }), protos: fc.uniqueArray(fc.constantFrom(...PROTOS), { minLength: 1, maxLength: 2 }), ports: fc.array(portRange, { minLength: 1, maxLength: 2 }) }) },
    { weight: 1, arbitrary: rule }
  )
  // An edit adds, removes, replaces or repeats rules anywhere in the filter (one or two at
  // once), changes only a rule's ports, protocols or one of its sources, adds a source to a
  // rule or drops one, or reverses the filter; each filter is a fresh copy, as the daemon
  // parses it from the map.
  const edit = fc.tuple(fc.constantFrom('remove', 'insert', 'replace', 'repeat', 'two', 'ports', 'protos', 'source', 'addsrc', 'dropsrc', 'reverse'), step, fc.nat(), fc.nat())
  const applyEdit = (f: FilterRule[], [kind, r, at, other]: [string, FilterRule, number, number]): FilterRule[] => {
    const i = f.length === 0 ? 0 : at % f.length
    if (f.length === 0 || kind === 'insert') return [...f.slice(0, at % (f.length + 1)), r, ...f.slice(at % (f.length + 1))]
    if (kind === 'remove') return f.filter((_, k) => k !== i)
    if (kind === 'replace') return f.map((x, k) => k === i ? r : x)
    if (kind === 'repeat') return [...f.slice(0, other % (f.length + 1)), f[i]!, ...f.slice(other % (f.length + 1))]
    if (kind === 'two') return [...f.filter((_, k) => k !== i && k !== other % f.length), r]
    if (kind === 'ports') return f.map((x, k) => k === i ? { ...x, ports: r.ports } : x)
    if (kind === 'protos') return f.map((x, k) => k === i ? { ...x, protos: r.protos } : x)
    if (kind === 'source') return f.map((x, k) => k === i ? { ...x, srcs: x.srcs.map((s, j) => j === other % x.srcs.length ? r.srcs[0]! : s) } : x)
    if (kind === 'addsrc') return f.map((x, k) => k === i ? { ...x, srcs: [...x.srcs.slice(0, other % (x.srcs.length + 1)), r.srcs[0]!, ...x.srcs.slice(other % (x.srcs.length + 1))] } : x)
    if (kind === 'dropsrc') return f.map((x, k) => k === i && x.srcs.length > 1 ? { ...x, srcs: x.srcs.filter((_, j) => j !== other % x.srcs.length) } : x)
    return [...f].reverse()
  }
  await fc.assert(fc.property(fc.array(step, { maxLength: 8 }), fc.array(edit, { minLength: 1, maxLength: 6 }), (start, edits) => {
    let f = start
    let prevCompiled = compileIncremental(f)
    if (JSON.stringify(sorted(prevCompiled.sets())) !== JSON.stringify(sorted(compileFilter(f)))) return false
    for (const e of edits) {
      const next = JSON.parse(JSON.stringify(applyEdit(f, e))) as FilterRule[]
      const compiled = compileIncremental(next, prevCompiled)
      if (JSON.stringify(sorted(compiled.sets())) !== JSON.stringify(sorted(compileFilter(next)))) return false
      const want = sortedDiff(diffSets(compileFilter(f), compileFilter(next)))
      if (JSON.stringify(sortedDiff(diffCompiled(prevCompiled, compiled))) !== JSON.stringify(want)) return false
      f = next
      prevCompiled = compiled
    }
    return true
  }), { numRuns: 1000 })
  t.pass('1000 random edit sequences')
})

t.test('a long run of one-peer changes ends where fresh compiles do', async t => {
  // Patched compiles share their maps of single sources and fold the changes in now and
  // then; 400 changes of a 300-peer filter fold many times over.
  const peerRules = (i: number, extra: number): FilterRule[] => [
    { srcs: [`10.${i >> 8}.${i & 255}.1`, `fd7a::${i.toString(16)}:1`], protos: [6], ports: [{ first: 22, last: 22 }, { first: 8000 + extra, last: 8000 + extra }] },
    { srcs: [`10.${i >> 8}.${i & 255}.1`], protos: [17, 1], ports: [{ first: 443, last: 443 }] }
  ]
  let seed = 7
  const rand = (n: number): number => { // mulberry32
    seed = (seed + 0x6d2b79f5) | 0
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) % n
  }
  const present = new Map<number, number>()
  for (let i = 0; i < 300; i++) present.set(i, 0)
  const build = (): FilterRule[] => JSON.parse(JSON.stringify([...present.keys()].sort((a, b) => a - b).flatMap(i => peerRules(i, present.get(i)!)))) as FilterRule[]
  let f = build()
  let prev = compileIncremental(f)
  let patched = 0
  for (let step = 0; step < 400; step++) {
    const i = rand(400)
    if (present.has(i) && rand(3) === 0) present.set(i, present.get(i)! + 1)
    else if (present.has(i)) present.delete(i)
    else present.set(i, 0)
    const next = build()
    const compiled = compileIncremental(next, prev)
    if (compiled.patched !== undefined) patched++
    // one failure is enough to see (the lists are long)
    if (JSON.stringify(sorted(compiled.sets())) !== JSON.stringify(sorted(compileFilter(next)))) return t.fail(`step ${step}: the elements differ from a fresh compile's`)
    if (JSON.stringify(sortedDiff(diffCompiled(prev, compiled))) !== JSON.stringify(sortedDiff(diffSets(compileFilter(f), compileFilter(next))))) return t.fail(`step ${step}: the diff differs from a fresh diff`)
    f = next
    prev = compiled
  }
  t.equal(patched, 400, 'every change patched the previous compile')
})

t.test('a rule of thousands of sources (a group) that gains or loses members: each change is patched, in the cost of the members that changed', async t => {
  // A server that 2,000 members of a group may reach on TCP 22, beside rules of its own;
  // members join and leave, one or a few at a time, and the member list stays sorted.
  const member = (i: number): string[] => [`10.${i >> 8}.${i & 255}.7`, `fd7a::${i.toString(16)}:7`]
  const members = new Set<number>()
  for (let i = 0; i < 2000; i++) members.add(i * 2)
  const build = (): FilterRule[] => JSON.parse(JSON.stringify([
    { srcs: ['10.99.0.1'], protos: [6], ports: [{ first: 443, last: 443 }] },
    { srcs: [...members].sort((a, b) => a - b).flatMap(member), protos: [6], ports: [{ first: 22, last: 22 }] },
    { srcs: ['10.99.0.2', '10.99.0.1'], protos: [17], ports: [{ first: 53, last: 53 }] }
  ])) as FilterRule[]
  let seed = 11
  const rand = (n: number): number => { // mulberry32
    seed = (seed + 0x6d2b79f5) | 0
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) % n
  }
  let f = build()
  let prev = compileIncremental(f)
  let patched = 0
  let mostTouched = 0
  for (let step = 0; step < 200; step++) {
    for (let k = 1 + rand(3); k > 0; k--) {
      const i = rand(4000)
      if (members.has(i)) members.delete(i)
      else members.add(i)
    }
    const next = build()
    const compiled = compileIncremental(next, prev)
    if (compiled.patched !== undefined) {
      patched++
      mostTouched = Math.max(mostTouched, [...compiled.patched.touched.values()].reduce((n, s) => n + s.size, 0))
    }
    if (JSON.stringify(sorted(compiled.sets())) !== JSON.stringify(sorted(compileFilter(next)))) return t.fail(`step ${step}: the elements differ from a fresh compile's`)
    if (JSON.stringify(sortedDiff(diffCompiled(prev, compiled))) !== JSON.stringify(sortedDiff(diffSets(compileFilter(f), compileFilter(next))))) return t.fail(`step ${step}: the diff differs from a fresh diff`)
    f = next
    prev = compiled
  }
  t.equal(patched, 200, 'every change patched the previous compile')
  t.ok(mostTouched <= 6, `a patch looked at the members that changed only (at most ${mostTouched} sources, of 4,000)`)

  // The same member list with a bad address added fails as a fresh compile does.
  const bad = build()
  bad[1]!.srcs.splice(1000, 0, '10.1.2.300')
  const fresh = (() => { try { compileFilter(bad); return undefined } catch (e) { return e as Error } })()
  t.match(fresh?.message, /^filter\[1\]\.srcs\[1000\]: "10\.1\.2\.300" is not an IP address or CIDR/)
  t.throws(() => compileIncremental(bad, prev), { code: 'bad_filter', message: fresh!.message })
  // and a member that is a range (a subnet) compiles afresh, with the same elements
  const wide = build()
  wide[1]!.srcs.push('10.200.0.0/24')
  const c = compileIncremental(wide, prev)
  t.equal(c.patched, undefined, 'a range source is not patched in')
  t.same(sorted(c.sets()), sorted(compileFilter(wide)))
})
