/**
 * flow-chains renders the chains and dynamic sets that keep the state of the flows this
 * node opens, so that their replies pass while every packet a peer starts is judged.
 */
import { IpProto, PROTOCOLS_WITH_PORTS } from '@warren/protocol'

/** FLOW_SET_SIZE caps each flow set: flows this node can have open with peers at once, per family. */
export const FLOW_SET_SIZE = 65536

/**
 * FLOW_TIMEOUTS say how long an idle flow's state lives, as conntrack's defaults do: a TCP
 * connection that sent only its SYN, one that is established, one that saw FIN or RST, a
 * datagram flow (UDP, DCCP, SCTP, UDP-Lite), an echo request.
 */
export const FLOW_TIMEOUTS = { tcpOpening: '2m', tcpOpen: '5d', tcpClosing: '2m', datagram: '3m', echo: '30s' } as const

/** RejectLimit is the token bucket that caps the rejects a table sends: `rate` a second, up to `burst` at once. */
export interface RejectLimit { rate: number, burst: number }

/**
 * REJECT_LIMIT caps the ICMP rejects the node sends, all peers and both families together
 * (one limit rule); over it, forbidden packets are dropped, so the node never answers a
 * flood with a flood of its own. An application dials far less often than this.
 */
export const REJECT_LIMIT: RejectLimit = { rate: 50, burst: 100 }

/** DATAGRAM_PROTOCOLS are the port protocols tracked as datagram flows (all but TCP). */
export const DATAGRAM_PROTOCOLS: readonly number[] = PROTOCOLS_WITH_PORTS.filter(p => p !== IpProto.TCP)

/**
 * flowChains renders one family's chains. Inbound packets from the mesh go through `in4` (or
 * `in6`), outbound packets to the mesh through `out4`; both dispatch on the protocol with one
 * verdict-map lookup.
 *
 * State is kept in dynamic sets, not in conntrack: loading conntrack makes the kernel track
 * every packet of the namespace (the WireGuard underlay included), which cost more than the
 * rest of the filter together with a wireguard-go that moves single packets (bench/RESULTS.md;
 * with segmentation offloads it tracks super-packets and the difference is gone). Instead:
 * - TCP: a bare SYN this node sends records the connection (peer . peer port . local port) in
 *   `tcp4`; the peer's packets in a recorded connection pass and keep it alive; FIN or RST
 *   (either way) moves it to `tcpend4`, which lets it close and then expire. Every other
 *   inbound TCP packet is judged by the policy, every packet, so a revocation cuts a
 *   connection the peer opened. Outbound data and ACKs, the bulk of the traffic, cost one
 *   flags test.
 * - Datagrams: inbound flows the policy allowed are recorded in `dgpeer4`; an outbound datagram
 *   that is not a reply to one of them opens a flow of this node in `dg4`, whose replies pass.
 *   A reply sent after a revocation finds the peer's flow in `dgpeer4` and opens nothing.
 * - ICMP: echo requests this node sends record (peer . id) in `echo4`, so their replies pass;
 *   ICMP errors pass, so that path MTU discovery and "port unreachable" work for the node's own
 *   flows (the kernel matches an error to its own sockets by the header it quotes); every other
 *   ICMP message is judged by the policy.
 * - Fragments after the first pass: they carry no ports, and without the first fragment,
 *   which is judged, the stack reassembles nothing.
 * A full flow set (FLOW_SET_SIZE) records no new flows until entries expire.
 *
 * A new flow the policy forbids is rejected, not dropped (the `refuse` chain, see
 * refuseChain): a bare TCP SYN and a datagram get an ICMP "administratively prohibited", so
 * the dialer fails at once instead of waiting out its timeout. Everything else the policy
 * forbids (a TCP segment of a connection that was cut, ICMP, other protocols) is dropped:
 * an error for those would teach the sender nothing.
 */
export function flowChains (fam: '4' | '6'): string[] {
  const ip = fam === '4' ? 'ip' : 'ip6'
  const icmp = fam === '4' ? 'icmp' : 'icmpv6'
  const icmpProto = fam === '4' ? 1 : 58
  const errors = fam === '4' ? 'destination-unreachable, time-exceeded, parameter-problem' : 'destination-unreachable, packet-too-big, time-exceeded, parameter-problem'
  const t = FLOW_TIMEOUTS
  const dgram = DATAGRAM_PROTOCOLS.map(p => `${p} : goto dgin${fam}`).join(', ')
  const dgramOut = DATAGRAM_PROTOCOLS.map(p => `${p} : goto dgout${fam}`).join(', ')
  // keys, seen from this node: peer address . peer port . local port
  const tcpIn = `${ip} saddr . th sport . th dport`
  const tcpOut = `${ip} daddr . th dport . th sport`
  const dgIn = `${ip} saddr . meta l4proto . th sport . th dport`
  const dgOut = `${ip} daddr . meta l4proto . th dport . th sport`
  const policy = (verdict: string): string[] => [
    `    ${ip} saddr . meta l4proto . th dport @allow${fam} ${verdict}`,
    `    ${ip} saddr . meta l4proto @allow${fam}p ${verdict}`,
    `    ${ip} saddr . meta l4proto . th dport @allow${fam}i ${verdict}`,
    `    ${ip} saddr . meta l4proto @allow${fam}pi ${verdict}`
  ]
  return [
    `  chain in${fam} {`,
    // A fragment after the first has no ports to judge; the first one, which carries them,
    // is judged, and the stack reassembles nothing without it (overlaps are discarded).
    fam === '4' ? '    ip frag-off & 0x1fff != 0 accept' : '    frag frag-off != 0 accept',
    `    meta l4proto vmap { 6 : goto tcpin${fam}, ${dgram}, ${icmpProto} : goto icmpin${fam} }`,
    `    ${ip} saddr . meta l4proto @allow${fam}p accept`,
    `    ${ip} saddr . meta l4proto @allow${fam}pi accept`,
    '    drop',
    '  }',
    `  chain tcpin${fam} {`,
    `    tcp flags & (syn | ack) != syn ${tcpIn} @tcp${fam} goto tcpreply${fam}`,
    ...policy('accept'),
    '    tcp flags & (fin | syn | rst | ack) == syn goto refuse',
    '    drop',
    '  }',
    `  chain tcpreply${fam} {`,
    `    tcp flags & (fin | rst) != 0 update @tcpend${fam} { ${tcpIn} timeout ${t.tcpClosing} } update @tcp${fam} { ${tcpIn} timeout ${t.tcpClosing} } accept`,
    `    ${tcpIn} @tcpend${fam} accept`,
    `    update @tcp${fam} { ${tcpIn} timeout ${t.tcpOpen} } accept`,
    '  }',
    `  chain dgin${fam} {`,
    `    ${dgIn} @dg${fam} update @dg${fam} { ${dgIn} timeout ${t.datagram} } accept`,
    ...policy(`goto dgok${fam}`),
    '    goto refuse',
    '  }',
    `  chain dgok${fam} {`,
    `    update @dgpeer${fam} { ${dgIn} timeout ${t.datagram} }`,
    '    accept',
    '  }',
    `  chain icmpin${fam} {`,
    `    ${icmp} type { ${errors} } accept`,
    `    ${icmp} type echo-reply ${ip} saddr . ${icmp} id @echo${fam} accept`,
    `    ${ip} saddr . meta l4proto @allow${fam}p accept`,
    `    ${ip} saddr . meta l4proto @allow${fam}pi accept`,
    '    drop',
    '  }',
    `  chain out${fam} {`,
    `    meta l4proto vmap { 6 : goto tcpout${fam}, ${dgramOut}, ${icmpProto} : goto icmpout${fam} }`,
    '  }',
    `  chain tcpout${fam} {`,
    // Most packets carry data or ACKs: they change no state (the replies keep a flow alive).
    '    tcp flags & (syn | fin | rst) == 0 return',
    `    tcp flags & (syn | ack) == syn update @tcp${fam} { ${tcpOut} timeout ${t.tcpOpening} } goto tcpsyn${fam}`,
    `    tcp flags & (fin | rst) != 0 ${tcpOut} @tcp${fam} update @tcpend${fam} { ${tcpOut} timeout ${t.tcpClosing} } update @tcp${fam} { ${tcpOut} timeout ${t.tcpClosing} }`,
    '  }',
    `  chain tcpsyn${fam} {`,
    // a new connection on the 4-tuple of one that closed lately starts afresh
    `    delete @tcpend${fam} { ${tcpOut} }`,
    '  }',
    `  chain dgout${fam} {`,
    `    ${dgOut} @dgpeer${fam} return`,
    `    update @dg${fam} { ${dgOut} timeout ${t.datagram} }`,
    '  }',
    `  chain icmpout${fam} {`,
    `    ${icmp} type echo-request update @echo${fam} { ${ip} daddr . ${icmp} id timeout ${t.echo} }`,
    '  }'
  ]
}

/**
 * refuseChain renders the chain that answers forbidden new flows (see flowChains):
 * `icmpx admin-prohibited` is ICMP type 3 code 13 for IPv4, which a TCP connect or a
 * connected UDP socket reports as EHOSTUNREACH, and ICMPv6 type 1 code 1 for IPv6, reported
 * as EACCES. It is one rule for both families, so REJECT_LIMIT holds for all of them
 * together. `reject` is valid here because the chain is reached only from the input and
 * forward hooks.
 */
export function refuseChain (limit: RejectLimit = REJECT_LIMIT): string[] {
  return [
    '  chain refuse {',
    `    limit rate ${limit.rate}/second burst ${limit.burst} packets reject with icmpx admin-prohibited`,
    '    drop',
    '  }'
  ]
}

/** flowSets renders one family's dynamic sets of flow state (see flowChains). */
export function flowSets (fam: '4' | '6'): string[] {
  const addr = fam === '4' ? 'ipv4_addr' : 'ipv6_addr'
  const dyn = `flags dynamic,timeout; size ${FLOW_SET_SIZE};`
  return [
    `  set tcp${fam} { type ${addr} . inet_service . inet_service; ${dyn} }`,
    `  set tcpend${fam} { type ${addr} . inet_service . inet_service; ${dyn} }`,
    `  set dg${fam} { type ${addr} . inet_proto . inet_service . inet_service; ${dyn} }`,
    `  set dgpeer${fam} { type ${addr} . inet_proto . inet_service . inet_service; ${dyn} }`,
    `  set echo${fam} { typeof ${fam === '4' ? 'ip daddr . icmp id' : 'ip6 daddr . icmpv6 id'}; ${dyn} }`
  ]
}
