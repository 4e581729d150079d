/**
 * firewallContract is the behaviour every Firewall must show, run against the fake and
 * the real nftables firewall alike (as js-libp2p's interface-compliance-tests do), so the
 * fake the engine's tests rely on cannot drift from the kernel. Each case gets a fresh
 * firewall from the factory, which also says how to read back what the firewall holds:
 * the packets it lets through (judged by the tracer over the read-back ruleset, and held
 * to protocol's reference filterAllows), what its last `set` did, and how to make the
 * backend refuse the next change.
 */
import type { Test } from 'tap'
import { filterAllows, PROTOCOLS_WITH_PORTS, type FilterRule } from '@warren/protocol'
import type { Firewall } from '../src/firewall/types.js'
import type { ApplyReport } from '../src/firewall/nftables.js'
import type { TracePacket, Verdict } from '../src/firewall/tracer.js'
import { classifyWgPortPacket, encodeControl, encodeStunBindingRequest, encodeStunBindingResponse, ControlKind } from '@warren/protocol'
import type { SharedPortRules } from '../src/firewall/types.js'
import { traceSharedIn, traceSharedOut } from '../src/firewall/shared-port-rules.js'

/** FirewallUnderTest is one fresh firewall and the ways to look into its backend. */
export interface FirewallUnderTest {
  firewall: Firewall
  /**
   * trace judges packets by the ruleset the backend holds now (read back once, not
   * remembered), in order, their rejects sharing one rate limit (the tracer's traceBurst)
   */
  trace: (packets: TracePacket[]) => Promise<Verdict[]>
  /** dump is the backend's ruleset as sorted text, '' when it holds none */
  dump: () => Promise<string>
  /** sharedPort is the shared-port rules the backend holds (read back), undefined when none */
  sharedPort: () => Promise<SharedPortRules | undefined>
  /** lastApply says what the last `set` did */
  lastApply: () => ApplyReport | undefined
  /** refuseNext makes the backend refuse the next transaction it is sent */
  refuseNext: () => void
}

/** FirewallFactory makes a fresh firewall for one case; it registers its cleanup on `t`. */
export type FirewallFactory = (t: Test) => Promise<FirewallUnderTest>

const IF = 'wcontract0'
const ctx = { interfaceName: IF }

const rule = (srcs: string[], protos: number[], ports: Array<[number, number]> = []): FilterRule =>
  ({ srcs, protos, ports: ports.map(([first, last]) => ({ first, last })) })

/** FILTER holds each kind of rule: single peers, a subnet and port range, a portless protocol, `*`. */
const FILTER: FilterRule[] = [
  rule(['100.64.0.1', 'fd7a::1'], [6], [[22, 22]]),
  rule(['100.64.1.0/24', 'fd7a::100:0/120'], [6, 17], [[8000, 8100]]),
  rule(['100.64.0.2'], [1, 58]),
  rule(['*'], [17], [[53, 53]])
]
const JOINING = rule(['100.64.0.7'], [6], [[22, 22]])

/** PACKETS probe every rule inside and just outside its sources, protocols and ports. */
const PACKETS: Array<Omit<TracePacket, 'iif'>> = [
  ...['100.64.0.1', 'fd7a::1', '100.64.0.3', 'fd7a::2', '100.64.0.7'].flatMap(src => [21, 22, 23].map(dport => ({ src, proto: 6, dport }))),
  ...['100.64.1.0', '100.64.1.255', '100.64.2.0', 'fd7a::100:ff', 'fd7a::101:0'].flatMap(src =>
    [6, 17].flatMap(proto => [7999, 8000, 8100, 8101].map(dport => ({ src, proto, dport })))),
  ...['100.64.0.2', '100.64.0.1', 'fd7a::1'].flatMap(src => [1, 58].map(proto => ({ src, proto }))),
  ...['192.0.2.1', '2001:db8::1', '100.64.0.2'].flatMap(src => [53, 54].map(dport => ({ src, proto: 17, dport }))),
  { src: '100.64.0.1', proto: 47 }
]

/** refusal is what the table does with a packet the filter forbids: a new flow (a TCP SYN, a datagram) is rejected, anything else dropped. */
const refusal = (p: Omit<TracePacket, 'iif'>): Verdict => PROTOCOLS_WITH_PORTS.includes(p.proto) && !(p.proto === 6 && p.stray === true) ? 'reject' : 'drop'

/**
 * expectPasses checks every probe against filterAllows, and that other interfaces are
 * untouched. The probes arrive a second apart, so no reject is over the rate limit.
 */
async function expectPasses (t: Test, fw: FirewallUnderTest, filter: FilterRule[], iif = IF): Promise<void> {
  const got = await fw.trace([...PACKETS.map((p, i) => ({ ...p, iif, at: i * 1000 })), { src: '100.64.0.1', proto: 6, dport: 23, iif: 'eth0' }])
  const wrong: string[] = []
  PACKETS.forEach((p, i) => {
    const want = filterAllows(filter, p) ? 'accept' : refusal(p)
    if (got[i] !== want) wrong.push(`${JSON.stringify(p)}: ${got[i]}, want ${want}`)
  })
  t.same(wrong, [], `all ${PACKETS.length} probes are judged as filterAllows judges them`)
  t.equal(got[PACKETS.length], 'untouched', 'another interface is not judged')
}

/** traceOne judges one packet. */
async function traceOne (fw: FirewallUnderTest, p: TracePacket): Promise<Verdict> {
  return (await fw.trace([p]))[0]!
}

const SHARED: SharedPortRules = { wgPort: 41641, controlAddress: '100.64.0.5', controlPort: 40000, egress: { eth0: '10.9.0.1' } }
const TXID = new Uint8Array(12).fill(7)
/** WG_PORT_PAYLOADS are what may arrive on the WireGuard port: WireGuard's four messages, STUN, control, junk. */
const WG_PORT_PAYLOADS: Uint8Array[] = [
  ...[1, 2, 3, 4].map(type => Uint8Array.of(type, 0, 0, 0, 0x21, 0x12, 0xa4, 0x42, ...new Array<number>(40).fill(0x57))),
  encodeStunBindingResponse(TXID, { address: '192.0.2.1', port: 41641 }),
  encodeStunBindingRequest(TXID),
  encodeControl(ControlKind.DiscoPing, new Uint8Array(32)),
  encodeControl(ControlKind.RelayBindAck, new Uint8Array(0)),
  Uint8Array.of(0x57, 0x52, 0x4e, 0x02, 1),
  Uint8Array.of(1, 1, 0, 0)
]

/** misrouted lists the WireGuard-port payloads that `sharedin` sends elsewhere than classifyWgPortPacket says. */
function misrouted (held: SharedPortRules | undefined, v6: boolean): string[] {
  const wrong: string[] = []
  for (const payload of WG_PORT_PAYLOADS) {
    const want = ['stun', 'control'].includes(classifyWgPortPacket(payload)) ? 'control' : 'untouched'
    const got = traceSharedIn(held, { dport: 41641, payload, v6 })
    if ((got === 'untouched' ? 'untouched' : got.to) !== want) wrong.push(`${Buffer.from(payload).toString('hex')}: ${JSON.stringify(got)}, want ${want}`)
  }
  return wrong
}

/** firewallContract runs the contract's cases as subtests of `t`. */
export function firewallContract (t: Test, factory: FirewallFactory): void {
  t.test('shared-port rules: only STUN answers and control packets go to the control socket; its packets leave from the WireGuard port', async t => {
    const fw = await factory(t)
    await fw.firewall.up()
    await fw.firewall.set(FILTER, { ...ctx, sharedPort: SHARED })
    const held = await fw.sharedPort()
    t.same(held, SHARED, 'the rules read back as set')
    t.same(misrouted(held, false), [], 'the rules tell packets apart as classifyWgPortPacket does')
    t.same(traceSharedIn(held, { dport: 41641, payload: WG_PORT_PAYLOADS[4]! }), { to: 'control', address: '100.64.0.5', port: 40000 })
    t.equal(traceSharedIn(held, { dport: 41642, payload: WG_PORT_PAYLOADS[4]! }), 'untouched', 'another port is untouched')
    t.same(traceSharedOut(held, { saddr: '100.64.0.5', sport: 40000, oif: 'eth0' }), { saddr: '10.9.0.1', sport: 41641 }, 'the control socket sends from the WireGuard port')
    t.equal(traceSharedOut(held, { saddr: '100.64.0.5', sport: 40000, oif: IF }), 'drop', 'never by an interface without an egress address (the mesh)')
    t.equal(traceSharedOut(held, { saddr: '100.64.0.5', sport: 40001, oif: 'eth0' }), 'untouched', 'other sockets are untouched')
    await expectPasses(t, fw, FILTER)

    const moved = { ...SHARED, egress: { eth0: '10.9.0.7', eth1: '10.8.0.1' } }
    await fw.firewall.set(FILTER, { ...ctx, sharedPort: moved })
    t.match(fw.lastApply(), { kind: 'elements', elements: 2 }, 'a changed and an added egress address are element updates')
    t.same(await fw.sharedPort(), moved)
    await fw.firewall.set(FILTER, { ...ctx, sharedPort: moved })
    t.equal(fw.lastApply()?.kind, 'none', 'the same rules again change nothing')
    await fw.firewall.set(FILTER, { ...ctx, sharedPort: { ...moved, egress: {} } })
    t.match(fw.lastApply(), { kind: 'elements', elements: 2 }, 'removing egress addresses too')
    t.same(await fw.sharedPort(), { ...moved, egress: {} })
    await fw.firewall.set(FILTER, { ...ctx, sharedPort: { ...SHARED, controlPort: 40001 } })
    t.equal(fw.lastApply()?.kind, 'rebuild', 'another control port rebuilds the table')
    t.equal((await fw.sharedPort())?.controlPort, 40001)
    await expectPasses(t, fw, FILTER)
    await t.rejects(fw.firewall.set(FILTER, { ...ctx, sharedPort: { ...SHARED, controlAddress: 'fd7a::1' } }), { code: 'bad_firewall_config' }, 'bad rules are refused')
    await fw.firewall.set(FILTER, ctx)
    t.equal(await fw.sharedPort(), undefined, 'rules left out of the context are removed')
    await expectPasses(t, fw, FILTER)
  })

  t.test('shared-port rules for IPv6 too: the same port, their own egress map', async t => {
    const fw = await factory(t)
    await fw.firewall.up()
    const dual: SharedPortRules = { ...SHARED, controlAddress6: 'fd7a:115c:a1e0::5', egress6: { eth0: '2001:db8::1' } }
    await fw.firewall.set(FILTER, { ...ctx, sharedPort: dual })
    const held = await fw.sharedPort()
    t.same(held, dual, 'the rules read back as set')
    t.same(misrouted(held, true), [], 'over IPv6 the rules tell packets apart as classifyWgPortPacket does: no WireGuard message matches')
    t.same(traceSharedIn(held, { dport: 41641, payload: WG_PORT_PAYLOADS[4]!, v6: true }), { to: 'control', address: 'fd7a:115c:a1e0::5', port: 40000 }, 'IPv6 goes to the IPv6 socket')
    t.same(traceSharedIn(held, { dport: 41641, payload: WG_PORT_PAYLOADS[4]! }), { to: 'control', address: '100.64.0.5', port: 40000 }, 'IPv4 still to the IPv4 one')
    t.same(traceSharedOut(held, { saddr: 'fd7a:115c:a1e0::5', sport: 40000, oif: 'eth0' }), { saddr: '2001:db8::1', sport: 41641 }, 'the IPv6 socket sends from the WireGuard port with the interface\'s IPv6 address')
    t.equal(traceSharedOut(held, { saddr: 'fd7a:115c:a1e0::5', sport: 40000, oif: IF }), 'drop', 'never by the mesh')
    t.equal(traceSharedIn(SHARED, { dport: 41641, payload: WG_PORT_PAYLOADS[4]!, v6: true }), 'untouched', 'without IPv6 rules IPv6 packets are untouched')

    const moved = { ...dual, egress6: { eth0: '2001:db8::2', eth1: 'fd00::1' } }
    await fw.firewall.set(FILTER, { ...ctx, sharedPort: moved })
    t.match(fw.lastApply(), { kind: 'elements', elements: 2 }, 'changed and added IPv6 egress addresses are element updates')
    t.same(await fw.sharedPort(), moved)
    await expectPasses(t, fw, FILTER)
    await fw.firewall.set(FILTER, { ...ctx, sharedPort: SHARED })
    t.equal(fw.lastApply()?.kind, 'rebuild', 'dropping the IPv6 rules rebuilds the table')
    t.same(await fw.sharedPort(), SHARED)
    await t.rejects(fw.firewall.set(FILTER, { ...ctx, sharedPort: { ...dual, controlAddress6: '100.64.0.5' } }), { code: 'bad_firewall_config', message: /controlAddress6/ }, 'an IPv4 control address for IPv6 is refused')
    await t.rejects(fw.firewall.set(FILTER, { ...ctx, sharedPort: { ...dual, egress6: { eth0: '10.0.0.1' } } }), { code: 'bad_firewall_config', message: /egress6.eth0/ }, 'an IPv4 egress address for IPv6 is refused')
    await t.rejects(fw.firewall.set(FILTER, { ...ctx, sharedPort: { ...SHARED, egress6: {} } }), { code: 'bad_firewall_config', message: /go together/ }, 'egress6 without controlAddress6 is refused')
    t.same(await fw.sharedPort(), SHARED, 'a refused change changes nothing')
  })

  t.test('a filter applied is what passes: every probe as filterAllows says', async t => {
    const fw = await factory(t)
    await fw.firewall.up()
    await fw.firewall.set(FILTER, ctx)
    await expectPasses(t, fw, FILTER)
    // the reference itself, so the probes above cannot all pass vacuously
    t.equal(await traceOne(fw, { src: '100.64.0.1', proto: 6, dport: 22, iif: IF }), 'accept')
    t.equal(await traceOne(fw, { src: '100.64.0.1', proto: 6, dport: 23, iif: IF }), 'reject')
    t.equal(await traceOne(fw, { src: 'fd7a::100:7', proto: 17, dport: 8050, iif: IF }), 'accept')
    t.equal(await traceOne(fw, { src: '100.64.0.2', proto: 1, iif: IF }), 'accept')
    await fw.firewall.set([], ctx)
    t.equal(await traceOne(fw, { src: '100.64.0.1', proto: 6, dport: 22, iif: IF }), 'reject', 'an empty filter lets nothing in')
  })

  t.test('a forbidden new flow is rejected, at most at the rate limit; anything else forbidden is dropped', async t => {
    const fw = await factory(t)
    await fw.firewall.up()
    await fw.firewall.set(FILTER, ctx)
    const cases: Array<[string, Omit<TracePacket, 'iif'>, Verdict]> = [
      ['a TCP SYN to a forbidden port', { src: '100.64.0.1', proto: 6, dport: 23 }, 'reject'],
      ['over IPv6 too', { src: 'fd7a::1', proto: 6, dport: 23 }, 'reject'],
      ['a UDP datagram from a forbidden source', { src: '100.64.2.0', proto: 17, dport: 8000 }, 'reject'],
      ['an SCTP packet to a forbidden port', { src: '100.64.1.1', proto: 132, dport: 8200 }, 'reject'],
      ['a stray ACK to a forbidden port (a connection that was cut)', { src: '100.64.0.1', proto: 6, dport: 23, stray: true }, 'drop'],
      ['a stray ACK to an allowed port', { src: '100.64.0.1', proto: 6, dport: 22, stray: true }, 'accept'],
      ['a forbidden ping', { src: '100.64.0.1', proto: 1 }, 'drop'],
      ['a forbidden portless protocol (GRE)', { src: '100.64.0.1', proto: 47 }, 'drop'],
      ['a reply in a flow this node opened', { src: '100.64.0.1', proto: 6, dport: 23, stray: true, flow: 'node' }, 'accept']
    ]
    const got = await fw.trace(cases.map(([, p], i) => ({ ...p, iif: IF, at: i * 1000 })))
    cases.forEach(([name, , want], i) => { t.equal(got[i], want, name) })

    // A burst far over the limit, all at once, then as many again two seconds later.
    const N = 1000
    const syn = { src: '100.64.0.3', proto: 6, dport: 23, iif: IF }
    const burst = await fw.trace([...Array.from({ length: N }, () => ({ ...syn, at: 0 })), ...Array.from({ length: N }, () => ({ ...syn, at: 2000 }))])
    const rejects = (vs: Verdict[]): number => vs.filter(v => v === 'reject').length
    const first = rejects(burst.slice(0, N))
    const second = rejects(burst.slice(N))
    t.comment(`of ${N} forbidden SYNs at once ${first} were rejected; of ${N} more two seconds later, ${second}`)
    t.ok(first >= 50 && first <= 200, `a burst gets about the limit of rejects (${first}), not one per packet`)
    t.ok(second >= 50 && second <= 200, `the limit refills with time (${second})`)
    t.same([...new Set(burst)].sort(), ['drop', 'reject'], 'the rest are dropped')
  })

  t.test('set is idempotent and ignores rule order', async t => {
    const fw = await factory(t)
    await fw.firewall.set(FILTER, ctx)
    const before = await fw.dump()
    t.not(before, '', 'the backend holds a ruleset')
    await fw.firewall.set(FILTER, ctx)
    t.equal(fw.lastApply()?.kind, 'none', 'the same filter again changes nothing')
    await fw.firewall.set([...FILTER].reverse(), ctx)
    t.equal(fw.lastApply()?.kind, 'none', 'the same rules in another order change nothing')
    t.equal(await fw.dump(), before, 'the ruleset reads back the same')
  })

  t.test('a small change is an element update; a new interface is a rebuild', async t => {
    const fw = await factory(t)
    await fw.firewall.set(FILTER, ctx)
    t.equal(fw.lastApply()?.kind, 'rebuild', 'the first set builds the table')
    await fw.firewall.set([...FILTER, JOINING], ctx)
    t.match(fw.lastApply(), { kind: 'elements', elements: 1 }, 'a peer joining is one element added')
    t.equal(await traceOne(fw, { src: '100.64.0.7', proto: 6, dport: 22, iif: IF }), 'accept', 'and it is in force')
    await fw.firewall.set(FILTER, ctx)
    t.match(fw.lastApply(), { kind: 'elements', elements: 1 }, 'a peer leaving is one element deleted')
    await expectPasses(t, fw, FILTER)
    await fw.firewall.set(FILTER, { interfaceName: 'wcontract1' })
    t.equal(fw.lastApply()?.kind, 'rebuild', 'another interface rebuilds the table')
    await expectPasses(t, fw, FILTER, 'wcontract1')
    t.equal(await traceOne(fw, { src: '100.64.0.1', proto: 6, dport: 22, iif: IF }), 'untouched', 'the old interface is no longer judged')
  })

  t.test('a refused apply leaves the previous rules in force', async t => {
    const fw = await factory(t)
    await fw.firewall.set(FILTER, ctx)
    const before = await fw.dump()
    fw.refuseNext()
    const err = await fw.firewall.set([...FILTER, JOINING], ctx).then(() => undefined, (e: unknown) => e as { code?: string, message?: string })
    t.equal(err?.code, 'firewall_apply_failed', 'set throws')
    t.match(err?.message, /previous rules stay in force/, 'and says the rules did not change')
    t.equal(await fw.dump(), before, 'the backend holds what it held')
    await expectPasses(t, fw, FILTER)
    for (const [filter, interfaceName, code] of [
      [[rule(['100.64.0.300'], [6], [[22, 22]])], IF, 'bad_filter'],
      [[rule(['100.64.0.1'], [6], [[90, 80]])], IF, 'bad_filter'],
      [FILTER, 'no spaces allowed', 'bad_firewall_config']
    ] as const) {
      await t.rejects(fw.firewall.set(filter as FilterRule[], { interfaceName }), { code }, `bad input is refused with ${code}`)
    }
    t.equal(await fw.dump(), before, 'bad input changed nothing')
    await fw.firewall.set([...FILTER, JOINING], ctx)
    t.equal(fw.lastApply()?.kind, 'elements', 'the next change applies as an element update')
    await expectPasses(t, fw, [...FILTER, JOINING])
  })

  t.test('close removes the ruleset, twice is harmless, and set brings it back', async t => {
    const fw = await factory(t)
    await fw.firewall.up()
    await fw.firewall.set(FILTER, ctx)
    await fw.firewall.close()
    t.equal(await fw.dump(), '', 'nothing is left')
    t.equal(await traceOne(fw, { src: '100.64.0.3', proto: 6, dport: 22, iif: IF }), 'untouched', 'the mesh is no longer judged')
    await fw.firewall.close()
    t.equal(await fw.dump(), '', 'a second close is harmless')
    await fw.firewall.up()
    await fw.firewall.set(FILTER, ctx)
    t.equal(fw.lastApply()?.kind, 'rebuild', 'set after close builds the table anew')
    await expectPasses(t, fw, FILTER)
  })
}
