import { isIP } from 'node:net'
import { CONTROL_MAGIC_U32 } from '@warren/protocol'

/**
 * The relay's nftables table, as text for `nft -f -`. One table owned by the relay
 * (never anyone else's), in the shape measured on this machine (see the README's relay
 * section): a packet that reaches an allocated port of a bound pair is rewritten at
 * prerouting, priority raw - 10, before conntrack sees it (`notrack`), so the kernel
 * forwards it to the other side and no process touches it:
 *
 *   A -> relay:PA   becomes   relay:PB -> B
 *
 * where PA and PB are the pair's two ports and B is the address the other node's bind
 * came from. IPv4 forwards live in `bound`/`peer_addr`, IPv6 ones in `bound6`/`peer_addr6`
 * with the same rewrite in `ip6` words (measured here: with IPv6 forwarding on, the kernel
 * forwards the rewritten packet; IPv6 has no martian-source check to relax). Both sides
 * of a pair are of one family: nft cannot rewrite IPv4 into IPv6. Only UDP to allocated
 * ports enters the `allocated` chain. Control packets
 * (Warren's magic, which WireGuard can never start with) there go on to the relay process; anything else to an allocated port that is
 * not bound yet is dropped, so the relay process never receives a data packet.
 */

/** RELAY_TABLE is the relay's own table: `inet warren_relay`. */
export const RELAY_TABLE = 'warren_relay'
export const RELAY_FAMILY = 'inet'

/** Forward is one direction of a bound pair: what a packet to `port` is rewritten to. */
export interface Forward {
  /** the allocated port the packet arrives on */
  port: number
  /** the pair's other allocated port: the new source port */
  outPort: number
  /** where the other node's bind came from: the new destination */
  to: { address: string, port: number }
}

/** renderRelayTable creates the table empty (deleting what was there: it is ours alone). */
export function renderRelayTable (): string {
  const t = `${RELAY_FAMILY} ${RELAY_TABLE}`
  return [
    `table ${t}`,
    `delete table ${t}`,
    `table ${t} {`,
    '  set ports { type inet_service; }',
    '  set bound { type inet_service; }',
    '  set bound6 { type inet_service; }',
    '  map out_port { type inet_service : inet_service; }',
    '  map peer_addr { type inet_service : ipv4_addr; }',
    '  map peer_addr6 { type inet_service : ipv6_addr; }',
    '  map peer_port { type inet_service : inet_service; }',
    '  chain prerouting {',
    '    type filter hook prerouting priority raw - 10; policy accept;',
    '    udp dport @ports jump allocated',
    '  }',
    '  chain allocated {',
    `    @th,64,32 0x${CONTROL_MAGIC_U32.toString(16)} return`,
    '    udp dport @bound notrack ip saddr set ip daddr udp sport set udp dport map @out_port ip daddr set udp dport map @peer_addr udp dport set udp dport map @peer_port accept',
    '    udp dport @bound6 notrack ip6 saddr set ip6 daddr udp sport set udp dport map @out_port ip6 daddr set udp dport map @peer_addr6 udp dport set udp dport map @peer_port accept',
    '    drop',
    '  }',
    '}',
    ''
  ].join('\n')
}

/** isIpv6Forward says whether a forward goes to an IPv6 address (its elements live in the IPv6 set and map). */
export function isIpv6Forward (f: Forward): boolean {
  return isIP(f.to.address) === 6
}

/** renderDeleteTable removes the relay's table. */
export function renderDeleteTable (): string {
  return `table ${RELAY_FAMILY} ${RELAY_TABLE}\ndelete table ${RELAY_FAMILY} ${RELAY_TABLE}\n`
}

/** RelayElementChange is one transaction on the table's elements. */
export interface RelayElementChange {
  addPorts?: number[]
  removePorts?: number[]
  /** forwards to (re)install: an existing forward for the same port is replaced */
  setForwards?: Forward[]
  /** ports whose forwards to remove (they must be installed) */
  removeForwards?: Forward[]
}

/**
 * renderElements writes one atomic change. A forward is removed from `bound` first and
 * added to it last, so a packet never meets a half-written forward.
 */
export function renderElements (c: RelayElementChange, installed: (port: number) => Forward | undefined): string {
  const t = `${RELAY_FAMILY} ${RELAY_TABLE}`
  const lines: string[] = []
  const del = (set: string, elems: string[]): void => { if (elems.length > 0) lines.push(`delete element ${t} ${set} { ${elems.join(', ')} }`) }
  const add = (set: string, elems: string[]): void => { if (elems.length > 0) lines.push(`add element ${t} ${set} { ${elems.join(', ')} }`) }
  const replaced = (c.setForwards ?? []).map(f => installed(f.port)).filter((f): f is Forward => f !== undefined)
  const gone = [...(c.removeForwards ?? []), ...replaced]
  const v4 = (fs: Forward[]): Forward[] => fs.filter(f => !isIpv6Forward(f))
  const v6 = (fs: Forward[]): Forward[] => fs.filter(isIpv6Forward)
  del('bound', v4(gone).map(f => String(f.port)))
  del('bound6', v6(gone).map(f => String(f.port)))
  del('out_port', gone.map(f => `${f.port} : ${f.outPort}`))
  del('peer_addr', v4(gone).map(f => `${f.port} : ${f.to.address}`))
  del('peer_addr6', v6(gone).map(f => `${f.port} : ${f.to.address}`))
  del('peer_port', gone.map(f => `${f.port} : ${f.to.port}`))
  del('ports', (c.removePorts ?? []).map(String))
  add('ports', (c.addPorts ?? []).map(String))
  const set = c.setForwards ?? []
  add('out_port', set.map(f => `${f.port} : ${f.outPort}`))
  add('peer_addr', v4(set).map(f => `${f.port} : ${f.to.address}`))
  add('peer_addr6', v6(set).map(f => `${f.port} : ${f.to.address}`))
  add('peer_port', set.map(f => `${f.port} : ${f.to.port}`))
  add('bound', v4(set).map(f => String(f.port)))
  add('bound6', v6(set).map(f => String(f.port)))
  return lines.length === 0 ? '' : lines.join('\n') + '\n'
}
