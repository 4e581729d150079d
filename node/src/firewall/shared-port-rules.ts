/**
 * shared-port-rules renders the two stateless rules that let the daemon's control socket
 * share WireGuard's UDP port (measured on this machine: WireGuard keeps its socket and
 * never sees these packets; the daemon's packets leave with WireGuard's port, so they
 * travel the same NAT mapping as WireGuard's data):
 *
 * - `sharedin` (prerouting, priority raw): a UDP packet to a local address on the
 *   WireGuard port whose payload is a Warren control packet (CONTROL_MAGIC at bytes 0-3) or
 *   a STUN binding success (0x0101 at bytes 0-1, the magic cookie at bytes 4-7) gets the
 *   control socket's address and port as destination. WireGuard messages have bytes 1-3
 *   zero, so they can match neither (protocol's classifyWgPortPacket is the reference).
 * - `sharedout` (output, priority raw): a packet from the control socket gets WireGuard's
 *   port as source and, as source address, the address the `egress4` map gives for the
 *   interface it leaves by; one leaving by an interface not in the map (the mesh itself,
 *   say) is dropped, so a mesh address never leaks onto a network.
 *
 * Both run before conntrack and mark the packet `notrack`: the rewrite is the whole of it,
 * with no state to go stale. IPv4 only (the control socket is bound to the mesh IPv4).
 * The first rule of `sharedin` carries the parameters in its comment, so that a read-back
 * of the table tells what it holds.
 */
import { WarrenError, CONTROL_MAGIC_U32, STUN_BINDING_SUCCESS, STUN_MAGIC_COOKIE } from '@warren/protocol'
import ipaddr from 'ipaddr.js'
import type { SharedPortRules } from './types.js'

/** SHARED_PORT_MARKER starts the comment that carries the rules' parameters. */
export const SHARED_PORT_MARKER = 'warren shared port'

const hex = (n: number): string => `0x${n.toString(16).padStart(8, '0')}`

function checkPort (n: number, field: string): void {
  if (!Number.isInteger(n) || n < 1 || n > 65535) {
    throw new WarrenError('bad_firewall_config', `shared port: ${field} ${String(n)} is not a UDP port (1-65535)`, { field: `sharedPort.${field}` })
  }
}

function checkIpv4 (a: string, field: string): void {
  if (!ipaddr.IPv4.isValidFourPartDecimal(a)) {
    throw new WarrenError('bad_firewall_config', `shared port: ${field} "${a}" is not an IPv4 address`, { field: `sharedPort.${field}` })
  }
}

/** checkSharedPortRules refuses parameters nft would misread, before anything reaches nft. */
export function checkSharedPortRules (r: SharedPortRules): void {
  checkPort(r.wgPort, 'wgPort')
  checkPort(r.controlPort, 'controlPort')
  checkIpv4(r.controlAddress, 'controlAddress')
  for (const [name, address] of Object.entries(r.egress)) {
    if (!/^[A-Za-z0-9_.-]{1,15}$/.test(name)) {
      throw new WarrenError('bad_firewall_config', `shared port: egress interface name "${name}" is not valid`, { field: 'sharedPort.egress' })
    }
    checkIpv4(address, `egress.${name}`)
  }
}

/** egressElements renders the egress map as sorted `"ifname" : address` elements. */
export function egressElements (egress: Record<string, string>): string[] {
  return Object.keys(egress).sort().map(name => `"${name}" : ${egress[name]!}`)
}

/** sameSharedLayout says whether two rule sets differ at most in their egress map (an element update). */
export function sameSharedLayout (a: SharedPortRules | undefined, b: SharedPortRules | undefined): boolean {
  if (a === undefined || b === undefined) return a === b
  return a.wgPort === b.wgPort && a.controlAddress === b.controlAddress && a.controlPort === b.controlPort
}

/** renderSharedPort renders the map and chains inside `table inet NAME { ... }`. */
export function renderSharedPort (r: SharedPortRules): string[] {
  const { wgPort: wg, controlAddress: ca, controlPort: cp } = r
  const elements = egressElements(r.egress)
  const to = `notrack ip daddr set ${ca} udp dport set ${cp}`
  const inbound = `meta nfproto ipv4 udp dport ${wg} fib daddr type local`
  const fromSocket = `meta nfproto ipv4 ip saddr ${ca} udp sport ${cp}`
  return [
    '  map egress4 {',
    '    type ifname : ipv4_addr',
    ...(elements.length > 0 ? [`    elements = { ${elements.join(', ')} }`] : []),
    '  }',
    '  chain sharedin {',
    '    type filter hook prerouting priority raw; policy accept;',
    `    ${inbound} @th,64,32 ${hex(CONTROL_MAGIC_U32)} ${to} comment "${SHARED_PORT_MARKER} ${wg} ${ca}:${cp}"`,
    `    ${inbound} @th,64,16 0x${STUN_BINDING_SUCCESS.toString(16).padStart(4, '0')} @th,96,32 ${hex(STUN_MAGIC_COOKIE)} ${to}`,
    '  }',
    '  chain sharedout {',
    '    type filter hook output priority raw; policy accept;',
    `    ${fromSocket} notrack ip saddr set oifname map @egress4 udp sport set ${wg} accept`,
    `    ${fromSocket} drop`,
    '  }'
  ]
}

/** changedEgress lists the interfaces whose egress address differs between two maps (added, removed or changed). */
export function changedEgress (prev: Record<string, string>, next: Record<string, string>): string[] {
  return [...new Set([...Object.keys(prev), ...Object.keys(next)])].filter(k => prev[k] !== next[k]).sort()
}

/**
 * renderEgressScript renders the element changes that turn one egress map into another
 * (deletions first); '' when they are equal.
 */
export function renderEgressScript (prev: Record<string, string>, next: Record<string, string>, table: string): string {
  const changed = changedEgress(prev, next)
  const gone = changed.filter(k => prev[k] !== undefined)
  const come = changed.filter(k => next[k] !== undefined)
  const lines: string[] = []
  if (gone.length > 0) lines.push(`delete element inet ${table} egress4 { ${gone.map(k => `"${k}"`).join(', ')} }`)
  if (come.length > 0) lines.push(`add element inet ${table} egress4 { ${come.map(k => `"${k}" : ${next[k]!}`).join(', ')} }`)
  return lines.length === 0 ? '' : lines.join('\n') + '\n'
}

/** parseSharedPortComment reads the parameters back from the marker comment; undefined for any other comment. */
export function parseSharedPortComment (comment: string): Omit<SharedPortRules, 'egress'> | undefined {
  const m = new RegExp(`^${SHARED_PORT_MARKER} (\\d+) ([\\d.]+):(\\d+)$`).exec(comment)
  if (m === null) return undefined
  return { wgPort: Number(m[1]), controlAddress: m[2]!, controlPort: Number(m[3]) }
}

/** SharedInPacket is a UDP packet arriving at this node from another network, for traceSharedIn. */
export interface SharedInPacket {
  dport: number
  payload: Uint8Array
  /** whether the destination is one of this host's addresses (default true) */
  local?: boolean
}

/** SharedOutPacket is a UDP packet this node sends, for traceSharedOut. */
export interface SharedOutPacket {
  saddr: string
  sport: number
  /** the interface it leaves by */
  oif: string
}

const u16 = (p: Uint8Array, at: number): number => (p[at]! << 8) | p[at + 1]!
const u32 = (p: Uint8Array, at: number): number => ((p[at]! << 24) | (p[at + 1]! << 16) | (p[at + 2]! << 8) | p[at + 3]!) >>> 0

/**
 * traceSharedIn runs an arriving packet through `sharedin` as rendered above (the byte
 * offsets of its payload matches): where it goes, the control socket or on untouched.
 */
export function traceSharedIn (r: SharedPortRules | undefined, p: SharedInPacket): { to: 'control', address: string, port: number } | 'untouched' {
  if (r === undefined || p.dport !== r.wgPort || p.local === false) return 'untouched'
  const control = p.payload.length >= 4 && u32(p.payload, 0) === CONTROL_MAGIC_U32
  const stun = p.payload.length >= 8 && u16(p.payload, 0) === STUN_BINDING_SUCCESS && u32(p.payload, 4) === STUN_MAGIC_COOKIE
  return control || stun ? { to: 'control', address: r.controlAddress, port: r.controlPort } : 'untouched'
}

/** traceSharedOut runs a packet this node sends through `sharedout`: rewritten, dropped or untouched. */
export function traceSharedOut (r: SharedPortRules | undefined, p: SharedOutPacket): { saddr: string, sport: number } | 'drop' | 'untouched' {
  if (r === undefined || p.saddr !== r.controlAddress || p.sport !== r.controlPort) return 'untouched'
  const saddr = r.egress[p.oif]
  return saddr === undefined ? 'drop' : { saddr, sport: r.wgPort }
}
