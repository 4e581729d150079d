import t from 'tap'
import { filterAllows, isWarrenError, type FilterRule } from '@warren/protocol'
import { compileFilter, createRulesetCompiler, renderTableBody } from '../src/firewall/ruleset.js'
import { createNftablesFirewall } from '../src/firewall/nftables.js'
import { createFakeFirewall, createFakeNft } from '../src/testing.js'
import { peers } from './firewall-fixtures.js'

const IF = { interfaceName: 'warren0' }
const tcp = (srcs: string[], first: number, last = first): FilterRule => ({ srcs, protos: [6], ports: [{ first, last }] })

/** Cases are whole filters and the sorted ruleset they must produce. */
const cases: Array<{ name: string, in: FilterRule[], want: string }> = [
  { name: 'empty filter allows nothing', in: [], want: 'iifname warren0' },
  {
    name: 'one peer, one port: a hash element',
    in: [tcp(['100.64.0.2'], 22)],
    want: 'allow4 100.64.0.2 . 6 . 22\niifname warren0'
  },
  {
    name: 'neighbouring peers stay single addresses, in the hash set',
    in: [tcp(['100.64.0.2', '100.64.0.3'], 22), tcp(['100.64.0.4'], 22)],
    want: 'allow4 100.64.0.2 . 6 . 22\nallow4 100.64.0.3 . 6 . 22\nallow4 100.64.0.4 . 6 . 22\niifname warren0'
  },
  {
    name: 'a small port range becomes hash elements, a wide one an interval element',
    in: [tcp(['100.64.0.2'], 8000, 8002), tcp(['100.64.0.2'], 9000, 9999)],
    want: 'allow4 100.64.0.2 . 6 . 8000\nallow4 100.64.0.2 . 6 . 8001\nallow4 100.64.0.2 . 6 . 8002\nallow4i 100.64.0.2 . 6 . 9000-9999\niifname warren0'
  },
  {
    name: 'overlapping and adjacent port ranges merge',
    in: [tcp(['100.64.0.2'], 80, 90), tcp(['100.64.0.2'], 85, 100), tcp(['100.64.0.2'], 101), tcp(['100.64.0.2'], 443)],
    want: 'allow4 100.64.0.2 . 6 . 443\nallow4i 100.64.0.2 . 6 . 80-101\niifname warren0'
  },
  {
    name: 'all ports from one peer: one address . protocol hash element',
    in: [tcp(['100.64.0.2'], 0, 1000), tcp(['100.64.0.2'], 1001, 65535)],
    want: 'allow4p 100.64.0.2 . 6\niifname warren0'
  },
  {
    name: 'a host inside a CIDR that already allows its port adds nothing',
    in: [tcp(['10.0.0.0/8'], 0, 65535), tcp(['10.1.2.3'], 5)],
    want: 'allow4pi 10.0.0.0/8 . 6\niifname warren0'
  },
  {
    name: 'a host inside a CIDR with other ports splits the CIDR; ranges rejoin',
    in: [tcp(['10.0.0.0/29'], 22), tcp(['10.0.0.1'], 80)],
    want: 'allow4 10.0.0.0 . 6 . 22\nallow4 10.0.0.1 . 6 . 22\nallow4 10.0.0.1 . 6 . 80\nallow4i 10.0.0.2-10.0.0.7 . 6 . 22\niifname warren0'
  },
  {
    name: 'host bits of a CIDR are ignored',
    in: [tcp(['100.64.0.77/24'], 22)],
    want: 'allow4i 100.64.0.0/24 . 6 . 22\niifname warren0'
  },
  {
    name: 'ICMP and ICMPv6 ignore ports; TCP without ports allows nothing',
    in: [{ srcs: ['100.64.0.2', 'fd7a:115c:a1e0::2'], protos: [1, 58], ports: [{ first: 22, last: 22 }] }, { srcs: ['100.64.0.9'], protos: [6], ports: [] }],
    want: 'allow4p 100.64.0.2 . 1\nallow4p 100.64.0.2 . 58\nallow6p fd7a:115c:a1e0::2 . 1\nallow6p fd7a:115c:a1e0::2 . 58\niifname warren0'
  },
  {
    name: 'star means every IPv4 and IPv6 source',
    in: [{ srcs: ['*'], protos: [17], ports: [{ first: 53, last: 53 }] }],
    want: 'allow4i 0.0.0.0/0 . 17 . 53\nallow6i ::/0 . 17 . 53\niifname warren0'
  },
  {
    name: 'IPv6 peers, UDP and SCTP port ranges',
    in: [{ srcs: ['fd7a:115c:a1e0::3/128', 'fd7a:115c:a1e0::4'], protos: [17, 132], ports: [{ first: 5000, last: 5100 }] }],
    want: 'allow6i fd7a:115c:a1e0::3 . 132 . 5000-5100\nallow6i fd7a:115c:a1e0::3 . 17 . 5000-5100\nallow6i fd7a:115c:a1e0::4 . 132 . 5000-5100\nallow6i fd7a:115c:a1e0::4 . 17 . 5000-5100\niifname warren0'
  },
  {
    name: 'rules repeated in another order give the same ruleset',
    in: [tcp(['100.64.0.3'], 22), tcp(['100.64.0.2'], 22), tcp(['100.64.0.3'], 22)],
    want: 'allow4 100.64.0.2 . 6 . 22\nallow4 100.64.0.3 . 6 . 22\niifname warren0'
  }
]

function shuffled<T> (xs: T[]): T[] {
  const out = [...xs]
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!]
  }
  return out
}

t.test('FakeFirewall: the table cases, replayed in random order, are idempotent', async t => {
  const fw = createFakeFirewall()
  await fw.up()
  for (let round = 0; round < 3; round++) {
    for (const c of shuffled(cases)) {
      await fw.set(shuffled(c.in), IF)
      t.equal(fw.dump(), c.want, c.name)
      const before = fw.changes()
      await fw.set(c.in, IF)
      t.equal(fw.changes(), before, `${c.name}: the same filter again changes nothing`)
    }
  }
})

t.test('NftablesFirewall on a fake nft: the same cases, and no command for a repeated set', async t => {
  const nft = createFakeNft()
  const fw = createNftablesFirewall({ runner: nft, table: 'wtest' })
  await fw.up()
  for (const c of shuffled([...cases, ...cases])) {
    await fw.set(shuffled(c.in), IF)
    t.equal(nft.dump('wtest'), c.want, c.name)
    const calls = nft.calls.length
    await fw.set(c.in, IF)
    t.equal(nft.calls.length, calls, `${c.name}: no nft command the second time`)
    t.equal(fw.lastApply()?.kind, 'none')
  }
})

t.test('the full table text', async t => {
  const body = renderTableBody(compileFilter([tcp(['100.64.0.2'], 22), { srcs: ['fd7a::2'], protos: [58], ports: [] }]), { table: 'warren', interfaceName: 'warren0' })
  t.equal(body, `table inet warren {
  set allow4 {
    type ipv4_addr . inet_proto . inet_service
    elements = {
      100.64.0.2 . 6 . 22
    }
  }
  set allow4p {
    type ipv4_addr . inet_proto
  }
  set allow4i {
    type ipv4_addr . inet_proto . inet_service
    flags interval
  }
  set allow4pi {
    type ipv4_addr . inet_proto
    flags interval
  }
  set allow6 {
    type ipv6_addr . inet_proto . inet_service
  }
  set allow6p {
    type ipv6_addr . inet_proto
    elements = {
      fd7a::2 . 58
    }
  }
  set allow6i {
    type ipv6_addr . inet_proto . inet_service
    flags interval
  }
  set allow6pi {
    type ipv6_addr . inet_proto
    flags interval
  }
  set tcp4 { type ipv4_addr . inet_service . inet_service; flags dynamic,timeout; size 65536; }
  set tcpend4 { type ipv4_addr . inet_service . inet_service; flags dynamic,timeout; size 65536; }
  set dg4 { type ipv4_addr . inet_proto . inet_service . inet_service; flags dynamic,timeout; size 65536; }
  set dgpeer4 { type ipv4_addr . inet_proto . inet_service . inet_service; flags dynamic,timeout; size 65536; }
  set echo4 { typeof ip daddr . icmp id; flags dynamic,timeout; size 65536; }
  set tcp6 { type ipv6_addr . inet_service . inet_service; flags dynamic,timeout; size 65536; }
  set tcpend6 { type ipv6_addr . inet_service . inet_service; flags dynamic,timeout; size 65536; }
  set dg6 { type ipv6_addr . inet_proto . inet_service . inet_service; flags dynamic,timeout; size 65536; }
  set dgpeer6 { type ipv6_addr . inet_proto . inet_service . inet_service; flags dynamic,timeout; size 65536; }
  set echo6 { typeof ip6 daddr . icmpv6 id; flags dynamic,timeout; size 65536; }
  chain mesh {
    meta nfproto vmap { ipv4 : goto in4, ipv6 : goto in6 }
    drop
  }
  chain meshout {
    meta nfproto vmap { ipv4 : goto out4, ipv6 : goto out6 }
  }
  chain in4 {
    ip frag-off & 0x1fff != 0 accept
    meta l4proto vmap { 6 : goto tcpin4, 17 : goto dgin4, 33 : goto dgin4, 132 : goto dgin4, 136 : goto dgin4, 1 : goto icmpin4 }
    ip saddr . meta l4proto @allow4p accept
    ip saddr . meta l4proto @allow4pi accept
    drop
  }
  chain tcpin4 {
    tcp flags & (syn | ack) != syn ip saddr . th sport . th dport @tcp4 goto tcpreply4
    ip saddr . meta l4proto . th dport @allow4 accept
    ip saddr . meta l4proto @allow4p accept
    ip saddr . meta l4proto . th dport @allow4i accept
    ip saddr . meta l4proto @allow4pi accept
    tcp flags & (fin | syn | rst | ack) == syn goto refuse
    drop
  }
  chain tcpreply4 {
    tcp flags & (fin | rst) != 0 update @tcpend4 { ip saddr . th sport . th dport timeout 2m } update @tcp4 { ip saddr . th sport . th dport timeout 2m } accept
    ip saddr . th sport . th dport @tcpend4 accept
    update @tcp4 { ip saddr . th sport . th dport timeout 5d } accept
  }
  chain dgin4 {
    ip saddr . meta l4proto . th sport . th dport @dg4 update @dg4 { ip saddr . meta l4proto . th sport . th dport timeout 3m } accept
    ip saddr . meta l4proto . th dport @allow4 goto dgok4
    ip saddr . meta l4proto @allow4p goto dgok4
    ip saddr . meta l4proto . th dport @allow4i goto dgok4
    ip saddr . meta l4proto @allow4pi goto dgok4
    goto refuse
  }
  chain dgok4 {
    update @dgpeer4 { ip saddr . meta l4proto . th sport . th dport timeout 3m }
    accept
  }
  chain icmpin4 {
    icmp type { destination-unreachable, time-exceeded, parameter-problem } accept
    icmp type echo-reply ip saddr . icmp id @echo4 accept
    ip saddr . meta l4proto @allow4p accept
    ip saddr . meta l4proto @allow4pi accept
    drop
  }
  chain out4 {
    meta l4proto vmap { 6 : goto tcpout4, 17 : goto dgout4, 33 : goto dgout4, 132 : goto dgout4, 136 : goto dgout4, 1 : goto icmpout4 }
  }
  chain tcpout4 {
    tcp flags & (syn | fin | rst) == 0 return
    tcp flags & (syn | ack) == syn update @tcp4 { ip daddr . th dport . th sport timeout 2m } goto tcpsyn4
    tcp flags & (fin | rst) != 0 ip daddr . th dport . th sport @tcp4 update @tcpend4 { ip daddr . th dport . th sport timeout 2m } update @tcp4 { ip daddr . th dport . th sport timeout 2m }
  }
  chain tcpsyn4 {
    delete @tcpend4 { ip daddr . th dport . th sport }
  }
  chain dgout4 {
    ip daddr . meta l4proto . th dport . th sport @dgpeer4 return
    update @dg4 { ip daddr . meta l4proto . th dport . th sport timeout 3m }
  }
  chain icmpout4 {
    icmp type echo-request update @echo4 { ip daddr . icmp id timeout 30s }
  }
  chain in6 {
    frag frag-off != 0 accept
    meta l4proto vmap { 6 : goto tcpin6, 17 : goto dgin6, 33 : goto dgin6, 132 : goto dgin6, 136 : goto dgin6, 58 : goto icmpin6 }
    ip6 saddr . meta l4proto @allow6p accept
    ip6 saddr . meta l4proto @allow6pi accept
    drop
  }
  chain tcpin6 {
    tcp flags & (syn | ack) != syn ip6 saddr . th sport . th dport @tcp6 goto tcpreply6
    ip6 saddr . meta l4proto . th dport @allow6 accept
    ip6 saddr . meta l4proto @allow6p accept
    ip6 saddr . meta l4proto . th dport @allow6i accept
    ip6 saddr . meta l4proto @allow6pi accept
    tcp flags & (fin | syn | rst | ack) == syn goto refuse
    drop
  }
  chain tcpreply6 {
    tcp flags & (fin | rst) != 0 update @tcpend6 { ip6 saddr . th sport . th dport timeout 2m } update @tcp6 { ip6 saddr . th sport . th dport timeout 2m } accept
    ip6 saddr . th sport . th dport @tcpend6 accept
    update @tcp6 { ip6 saddr . th sport . th dport timeout 5d } accept
  }
  chain dgin6 {
    ip6 saddr . meta l4proto . th sport . th dport @dg6 update @dg6 { ip6 saddr . meta l4proto . th sport . th dport timeout 3m } accept
    ip6 saddr . meta l4proto . th dport @allow6 goto dgok6
    ip6 saddr . meta l4proto @allow6p goto dgok6
    ip6 saddr . meta l4proto . th dport @allow6i goto dgok6
    ip6 saddr . meta l4proto @allow6pi goto dgok6
    goto refuse
  }
  chain dgok6 {
    update @dgpeer6 { ip6 saddr . meta l4proto . th sport . th dport timeout 3m }
    accept
  }
  chain icmpin6 {
    icmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem } accept
    icmpv6 type echo-reply ip6 saddr . icmpv6 id @echo6 accept
    ip6 saddr . meta l4proto @allow6p accept
    ip6 saddr . meta l4proto @allow6pi accept
    drop
  }
  chain out6 {
    meta l4proto vmap { 6 : goto tcpout6, 17 : goto dgout6, 33 : goto dgout6, 132 : goto dgout6, 136 : goto dgout6, 58 : goto icmpout6 }
  }
  chain tcpout6 {
    tcp flags & (syn | fin | rst) == 0 return
    tcp flags & (syn | ack) == syn update @tcp6 { ip6 daddr . th dport . th sport timeout 2m } goto tcpsyn6
    tcp flags & (fin | rst) != 0 ip6 daddr . th dport . th sport @tcp6 update @tcpend6 { ip6 daddr . th dport . th sport timeout 2m } update @tcp6 { ip6 daddr . th dport . th sport timeout 2m }
  }
  chain tcpsyn6 {
    delete @tcpend6 { ip6 daddr . th dport . th sport }
  }
  chain dgout6 {
    ip6 daddr . meta l4proto . th dport . th sport @dgpeer6 return
    update @dg6 { ip6 daddr . meta l4proto . th dport . th sport timeout 3m }
  }
  chain icmpout6 {
    icmpv6 type echo-request update @echo6 { ip6 daddr . icmpv6 id timeout 30s }
  }
  chain refuse {
    limit rate 50/second burst 100 packets reject with icmpx admin-prohibited
    drop
  }
  chain input {
    type filter hook input priority filter - 10; policy accept;
    iifname "warren0" jump mesh comment "warren ruleset v4"
  }
  chain forward {
    type filter hook forward priority filter - 10; policy accept;
    iifname "warren0" jump mesh comment "warren ruleset v4"
    oifname "warren0" jump meshout
  }
  chain output {
    type filter hook output priority filter - 10; policy accept;
    oifname "warren0" jump meshout
  }
}
`)
})

t.test('tracer: only mesh traffic is judged, replies of flows the node opened pass, ICMP only where allowed', async t => {
  const fw = createFakeFirewall()
  await fw.set([tcp(['100.64.0.2'], 22), { srcs: ['100.64.0.3'], protos: [1], ports: [] }], IF)
  const p = { src: '100.64.0.2', proto: 6, dport: 22, iif: 'warren0' }
  t.equal(fw.trace(p), 'accept')
  t.equal(fw.trace({ ...p, dport: 23 }), 'reject', 'a SYN to a forbidden port is rejected')
  t.equal(fw.trace({ ...p, dport: 23, stray: true }), 'drop', 'a segment of no allowed connection is dropped')
  t.equal(fw.trace({ ...p, proto: 17, dport: 22 }), 'reject', 'so is a forbidden datagram')
  t.equal(fw.trace({ ...p, iif: 'eth0', dport: 23 }), 'untouched')
  t.equal(fw.trace({ ...p, dport: 23, flow: 'node' }), 'accept', 'reply of a flow this node opened')
  t.equal(fw.trace({ ...p, dport: 23, flow: 'peer', stray: true }), 'drop', 'a flow the peer opened is judged by the policy')
  t.equal(fw.trace({ src: '100.64.0.2', proto: 1, iif: 'warren0', flow: 'node', icmpType: 0 }), 'accept', 'echo reply to a ping this node sent')
  t.equal(fw.trace({ src: '100.64.0.2', proto: 1, iif: 'warren0', flow: 'node', icmpType: 8 }), 'drop', 'an echo request is never a reply')
  t.equal(fw.trace({ src: '100.64.0.2', proto: 1, iif: 'warren0', icmpType: 3 }), 'accept', 'ICMP errors pass (path MTU, unreachable)')
  t.equal(fw.trace({ src: 'fd7a::2', proto: 58, iif: 'warren0', icmpType: 2 }), 'accept', 'ICMPv6 packet too big passes')
  t.equal(fw.trace({ src: '100.64.0.2', proto: 58, iif: 'warren0', icmpType: 2 }), 'drop', 'ICMPv6 inside IPv4 is not ICMP: the policy judges it')
  t.equal(fw.trace({ src: '100.64.0.3', proto: 1, iif: 'warren0' }), 'accept', 'ping from an allowed peer')
  t.equal(fw.trace({ src: '100.64.0.2', proto: 1, iif: 'warren0' }), 'drop', 'ping from a peer allowed only TCP')
  t.equal(fw.trace({ src: 'fd7a::2', proto: 58, iif: 'warren0' }), 'drop', 'no ICMPv6 (not even neighbour discovery) unless allowed')
  t.equal(filterAllows([tcp(['100.64.0.2'], 22)], { src: '100.64.0.2', proto: 6, dport: 22 }), true)
  t.equal(filterAllows([tcp(['100.64.0.2'], 22)], { src: '100.64.0.2', proto: 6 }), false)
})

t.test('bad input is refused with the field named, and changes nothing', async t => {
  const nft = createFakeNft()
  const fw = createNftablesFirewall({ runner: nft, table: 'wtest' })
  await fw.set([tcp(['100.64.0.2'], 22)], IF)
  const calls = nft.calls.length
  const bad: Array<[FilterRule[], RegExp]> = [
    [[tcp(['100.64.0.300'], 22)], /filter\[0\]\.srcs\[0\]: "100\.64\.0\.300" is not an IP address or CIDR/],
    [[tcp(['example.com'], 22)], /not an IP address or CIDR/],
    [[tcp(['10.0.0.0/33'], 22)], /prefix length \/33 is too long/],
    [[tcp(['fe80::1%eth0'], 22)], /not an IP address/],
    [[tcp(['100.64.0.2'], 90, 80)], /filter\[0\]\.ports\[0\]: 90-80 is not a port range/],
    [[{ srcs: ['100.64.0.2'], protos: [256], ports: [] }], /filter\[0\]\.protos\[0\]: 256 is not an IANA protocol number/]
  ]
  for (const [filter, want] of bad) {
    const err = await fw.set(filter, IF).catch(e => e)
    t.ok(isWarrenError(err), 'a WarrenError')
    t.equal(err.code, 'bad_filter')
    t.match(err.message, want)
  }
  const err = await fw.set([], { interfaceName: 'a-name-that-is-too-long' }).catch(e => e)
  t.match(err.message, /interface name "a-name-that-is-too-long" is not valid/)
  t.equal(nft.calls.length, calls, 'no nft command was run')
  t.equal(nft.dump('wtest'), 'allow4 100.64.0.2 . 6 . 22\niifname warren0')
})

t.test('adding or removing one peer sends only element commands, checked then applied', async t => {
  const nft = createFakeNft()
  const fw = createNftablesFirewall({ runner: nft, table: 'wtest' })
  await fw.up()
  await fw.set(peers(300, 150), IF)
  t.equal(fw.lastApply()?.kind, 'rebuild')
  t.match(nft.calls.at(-1)?.input ?? '', /^add table inet wtest\ndelete table inet wtest\ntable inet wtest \{/, 'first apply replaces the table atomically')

  let from = nft.calls.length
  await fw.set(peers(300), IF)
  let sent = nft.calls.slice(from)
  t.same(sent.map(c => c.argv.join(' ')), ['nft --check -f -', 'nft -f -'], 'checked, then applied')
  t.equal(sent[1]!.input, 'add element inet wtest allow4 { 100.64.1.44 . 6 . 22, 100.64.1.44 . 6 . 8150 }\n')
  t.equal(sent[0]!.input, sent[1]!.input, 'the check saw the same script')
  t.same(fw.lastApply(), { kind: 'elements', elements: 2, scriptBytes: sent[1]!.input!.length })

  from = nft.calls.length
  await fw.set(peers(300, 7), IF)
  sent = nft.calls.slice(from)
  t.same(sent.map(c => c.argv.join(' ')), ['nft --check -f -', 'nft -f -'])
  t.equal(sent[1]!.input, 'delete element inet wtest allow4 { 100.64.0.14 . 6 . 22, 100.64.0.14 . 6 . 8007 }\n')
  t.equal(nft.dump('wtest').split('\n').length, 299 * 2 + 1)
})

t.test('a one-peer change to a large filter is checked like a fresh one', async t => {
  const nft = createFakeNft()
  const fw = createNftablesFirewall({ runner: nft, table: 'wtest' })
  await fw.set(peers(2000), IF)
  const before = nft.dump('wtest')
  const calls = nft.calls.length
  // the changed rule is all the incremental compile looks at: its errors must still be caught
  const bad: Array<[FilterRule, RegExp]> = [
    [{ srcs: ['100.64.99.300'], protos: [6], ports: [{ first: 22, last: 22 }] }, /filter\[2000\]\.srcs\[0\]: "100\.64\.99\.300" is not an IP address or CIDR/],
    [{ srcs: ['100.64.99.1'], protos: [6], ports: [{ first: 90, last: 80 }] }, /filter\[2000\]\.ports\[0\]: 90-80 is not a port range/],
    [{ srcs: ['100.64.99.1'], protos: [6, 256], ports: [] }, /filter\[2000\]\.protos\[1\]: 256 is not an IANA protocol number/]
  ]
  for (const [rule, want] of bad) {
    const err = await fw.set([...peers(2000), rule], IF).catch(e => e)
    t.equal(err.code, 'bad_filter')
    t.match(err.message, want)
  }
  t.equal(nft.calls.length, calls, 'no nft command was run')
  t.equal(nft.dump('wtest'), before, 'the rules in force did not change')
  // the same source spelt two ways is one source: its ports are merged, not duplicated
  await fw.set([...peers(2000), { srcs: ['100.64.0.0/32'], protos: [6], ports: [{ first: 23, last: 23 }] }], IF)
  t.equal(nft.calls.at(-1)?.input, 'add element inet wtest allow4 { 100.64.0.0 . 6 . 23 }\n')
  await fw.set(peers(2000), IF)
  t.equal(nft.calls.at(-1)?.input, 'delete element inet wtest allow4 { 100.64.0.0 . 6 . 23 }\n')
  t.equal(nft.dump('wtest'), before)
})

t.test('a refused update or a failed check of a rebuild leaves the previous rules and throws a clear error', async t => {
  const nft = createFakeNft()
  const fw = createNftablesFirewall({ runner: nft, table: 'wtest' })
  await fw.set(peers(5), IF)
  const before = nft.dump('wtest')

  nft.failNext(c => c.argv.join(' ') === 'nft -f -', 'Error: Could not process rule: Cannot allocate memory')
  let err = await fw.set(peers(6), IF).catch(e => e)
  t.equal(err.code, 'firewall_apply_failed')
  t.match(err.message, /refused an update of 2 elements of table inet wtest; nothing of it was applied .*so the previous rules stay in force/)
  t.match(err.message, /Cannot allocate memory/)
  t.equal(nft.dump('wtest'), before)

  // a rebuild (here for another interface) starts by deleting the table: it is checked first
  nft.failNext(c => c.argv.includes('--check'), 'Error: Could not process rule: No space left on device')
  const from = nft.calls.length
  err = await fw.set(peers(6), { interfaceName: 'warren1' }).catch(e => e)
  t.equal(err.code, 'firewall_apply_failed')
  t.match(err.message, /refused the rebuild of table inet wtest at the check; the previous rules stay in force/)
  t.match(err.message, /No space left on device/)
  t.same(nft.calls.slice(from).filter(c => c.input !== undefined).map(c => c.argv.join(' ')), ['nft --check -f -'], 'nothing was applied after the failed check')
  t.equal(nft.dump('wtest'), before)

  await fw.set(peers(6), IF)
  t.equal(fw.lastApply()?.kind, 'elements', 'the rules in force are known: the next set is an element update')
  t.not(nft.dump('wtest'), before, 'the next set applies once nft accepts it')
})

t.test('a table deleted or edited behind our back is rebuilt atomically', async t => {
  const nft = createFakeNft()
  const fw = createNftablesFirewall({ runner: nft, table: 'wtest' })
  await fw.set(peers(5), IF)
  nft.tables.delete('wtest')
  await fw.set(peers(6), IF)
  t.equal(fw.lastApply()?.kind, 'rebuild', 'element update failed, so the whole table was rebuilt')
  t.equal(nft.dump('wtest').split('\n').length, 6 * 2 + 1)

  nft.tables.get('wtest')!.sets.allow4 = []
  t.equal(await fw.sync(), 'rebuilt')
  t.equal(nft.dump('wtest').split('\n').length, 6 * 2 + 1)
  t.equal(await fw.sync(), 'unchanged')
})

t.test('a restarted daemon adopts the kernel table and sends only a diff', async t => {
  const nft = createFakeNft()
  await createNftablesFirewall({ runner: nft, table: 'wtest' }).set(peers(50), IF)
  const restarted = createNftablesFirewall({ runner: nft, table: 'wtest' })
  await restarted.up()
  const from = nft.calls.length
  await restarted.set(peers(50), IF)
  t.equal(nft.calls.length, from, 'same filter after restart: nothing sent')
  await restarted.set(peers(51), IF)
  t.equal(restarted.lastApply()?.kind, 'elements')
  await restarted.set(peers(51), { interfaceName: 'warren1' })
  t.equal(restarted.lastApply()?.kind, 'rebuild', 'another interface needs new chains')
})

t.test('close deletes only our table; the table stays while the daemon is away', async t => {
  const nft = createFakeNft()
  const other = createNftablesFirewall({ runner: nft, table: 'othertable' })
  await other.set(peers(3), IF)
  const fw = createNftablesFirewall({ runner: nft, table: 'wtest' })
  await fw.set(peers(3), IF)
  t.equal(nft.tables.size, 2)
  await fw.close()
  t.same([...nft.tables.keys()], ['othertable'])
  await fw.close()
  t.same([...nft.tables.keys()], ['othertable'], 'closing twice is fine')
})

t.test('options are checked', async t => {
  t.throws(() => createNftablesFirewall({ runner: createFakeNft(), table: 'bad name' }), /table name "bad name" is not valid/)
  t.throws(() => createNftablesFirewall({ runner: createFakeNft(), family: 'ip' as 'inet' }), /family "ip" is not supported/)
  const missing = createNftablesFirewall({ runner: { run: async () => ({ stdout: '', stderr: 'nft: not found', exitCode: 127 }) } })
  await t.rejects(missing.up(), /install nftables/)
})

t.test('each compiler keeps its own sources: a compile of another compiler is not patched', async t => {
  const a = createRulesetCompiler()
  const b = createRulesetCompiler()
  const before = a.compileIncremental([tcp(['100.64.0.1'], 22)])
  const after = [tcp(['100.64.0.1'], 22), tcp(['100.64.0.2'], 22)]
  t.ok(a.compileIncremental(after, before).patched !== undefined, 'its own compiler patches it')
  const other = b.compileIncremental(after, before)
  t.equal(other.patched, undefined, 'another compiler compiles afresh')
  t.same(other.sets(), compileFilter(after), 'with the same elements')
})
