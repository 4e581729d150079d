import t from 'tap'
import fc from 'fast-check'
import type { FilterRule } from '@warren/protocol'
import {
  compileFilter, compileIncremental, diffCompiled, diffSets, filterAllows, parseElement, PORT_PROTOCOLS, SET_NAMES,
  type SetDiff, type SetElements, type SetName
} from '../src/firewall/ruleset.js'
import { createNftablesFirewall } from '../src/firewall/nftables.js'
import { createFakeFirewall, createFakeNft, type TracePacket } from '../src/firewall/fake.js'

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
}).map(p => PORT_PROTOCOLS.includes(p.proto) ? p : { src: p.src, proto: p.proto })

/** edgePackets probes each rule at its edges: ports just inside and outside, neighbouring protocols. */
function edgePackets (f: FilterRule[]): Array<{ src: string, proto: number, dport?: number }> {
  const out: Array<{ src: string, proto: number, dport?: number }> = []
  for (const r of f) {
    for (const s of r.srcs) {
      const addr = s === '*' ? '10.0.0.1' : s.split('/')[0]!
      for (const proto of [...r.protos, 6, 1]) {
        if (!PORT_PROTOCOLS.includes(proto)) { out.push({ src: addr, proto }); continue }
        for (const p of r.ports) for (const dport of [p.first - 1, p.first, p.last, p.last + 1]) if (dport >= 0 && dport <= 65535) out.push({ src: addr, proto, dport })
      }
    }
  }
  return out
}

const IF = 'warren0'
const verdictOf = (f: FilterRule[], p: { src: string, proto: number, dport?: number }): string => filterAllows(f, p) ? 'accept' : 'drop'

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
  await fc.assert(fc.property(fc.array(step, { maxLength: 8 }), fc.array(fc.tuple(fc.boolean(), step, fc.nat()), { minLength: 1, maxLength: 6 }), (start, edits) => {
    let f = start
    let prevCompiled = compileIncremental(f)
    if (JSON.stringify(sorted(prevCompiled.sets())) !== JSON.stringify(sorted(compileFilter(f)))) return false
    for (const [remove, r, at] of edits) {
      const next = remove && f.length > 0 ? f.filter((_, i) => i !== at % f.length) : [...f, r]
      const compiled = compileIncremental(next, prevCompiled)
      if (JSON.stringify(sorted(compiled.sets())) !== JSON.stringify(sorted(compileFilter(next)))) return false
      const want = sortedDiff(diffSets(compileFilter(f), compileFilter(next)))
      if (JSON.stringify(sortedDiff(diffCompiled(prevCompiled, compiled))) !== JSON.stringify(want)) return false
      f = next
      prevCompiled = compiled
    }
    return true
  }), { numRuns: 500 })
  t.pass('500 random edit sequences')
})
