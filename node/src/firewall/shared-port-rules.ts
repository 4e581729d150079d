/**
 * shared-port-rules renders the two stateless rules (a pair per address family) that let
 * the daemon's control sockets share WireGuard's UDP port (measured on this machine: WireGuard keeps its socket and
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
 * with no state to go stale. With `controlAddress6` the same pair is rendered for IPv6
 * (`ip6 daddr set`, the `egress6` map), toward the control socket bound to the mesh IPv6
 * address on the same port; measured here, the kernel delivers the rewritten IPv6 packet
 * to that socket and fixes the UDP checksum as for IPv4. The first rule of `sharedin`
 * carries the parameters in its comment, so that a read-back of the table tells what it
 * holds.
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

/** checkIpv6 takes only the plain form nft prints back (no zone, no embedded IPv4), so a read-back compares equal. */
function checkIpv6 (a: string, field: string): void {
  if (!ipaddr.IPv6.isValid(a) || a.includes('%') || a.includes('.') || ipaddr.IPv6.parse(a).toString() !== a) {
    throw new WarrenError('bad_firewall_config', `shared port: ${field} "${a}" is not an IPv6 address in its short form (like fd7a:115c:a1e0::5)`, { field: `sharedPort.${field}` })
  }
}

/** EgressMapName names the two egress maps: IPv4 and IPv6 source addresses per interface. */
export type EgressMapName = 'egress4' | 'egress6'

/** egressMaps gives both egress maps of shared-port rules (empty ones when absent). */
export function egressMaps (r: SharedPortRules | undefined): Record<EgressMapName, Record<string, string>> {
  return { egress4: r?.egress ?? {}, egress6: r?.egress6 ?? {} }
}

const EGRESS_MAPS: readonly EgressMapName[] = ['egress4', 'egress6']

/** checkSharedPortRules refuses parameters nft would misread, before anything reaches nft. */
export function checkSharedPortRules (r: SharedPortRules): void {
  checkPort(r.wgPort, 'wgPort')
  checkPort(r.controlPort, 'controlPort')
  checkIpv4(r.controlAddress, 'controlAddress')
  if (r.controlAddress6 !== undefined) checkIpv6(r.controlAddress6, 'controlAddress6')
  if ((r.controlAddress6 === undefined) !== (r.egress6 === undefined)) {
    throw new WarrenError('bad_firewall_config', 'shared port: controlAddress6 and egress6 go together (both for IPv6, neither without)', { field: 'sharedPort.egress6' })
  }
  const checks: Array<[Record<string, string>, string, (a: string, field: string) => void]> = [[r.egress, 'egress', checkIpv4], [r.egress6 ?? {}, 'egress6', checkIpv6]]
  for (const [map, field, checkAddress] of checks) {
    for (const [name, address] of Object.entries(map)) {
      if (!/^[A-Za-z0-9_.-]{1,15}$/.test(name)) {
        throw new WarrenError('bad_firewall_config', `shared port: ${field} interface name "${name}" is not valid`, { field: `sharedPort.${field}` })
      }
      checkAddress(address, `${field}.${name}`)
    }
  }
}

/** egressElements renders the egress map as sorted `"ifname" : address` elements. */
export function egressElements (egress: Record<string, string>): string[] {
  return Object.keys(egress).sort().map(name => `"${name}" : ${egress[name]!}`)
}

/** sameSharedLayout says whether two rule sets differ at most in their egress maps (an element update). */
export function sameSharedLayout (a: SharedPortRules | undefined, b: SharedPortRules | undefined): boolean {
  if (a === undefined || b === undefined) return a === b
  return a.wgPort === b.wgPort && a.controlAddress === b.controlAddress && a.controlPort === b.controlPort && a.controlAddress6 === b.controlAddress6
}

/** sharedPortComment is the marker comment: `warren shared port WG CA:CP [CA6]`. */
export function sharedPortComment (r: Omit<SharedPortRules, 'egress'>): string {
  return `${SHARED_PORT_MARKER} ${r.wgPort} ${r.controlAddress}:${r.controlPort}${r.controlAddress6 !== undefined ? ` ${r.controlAddress6}` : ''}`
}

/** FamilyRules are one address family's shared-port rules: nft's words for it and the control socket's address. */
interface FamilyRules { nfproto: 'ipv4' | 'ipv6', ip: 'ip' | 'ip6', map: EgressMapName, control: string }

/** renderSharedPort renders the maps and chains inside `table inet NAME { ... }`. */
export function renderSharedPort (r: SharedPortRules): string[] {
  const { wgPort: wg, controlPort: cp } = r
  const families: FamilyRules[] = [{ nfproto: 'ipv4', ip: 'ip', map: 'egress4', control: r.controlAddress }]
  if (r.controlAddress6 !== undefined) families.push({ nfproto: 'ipv6', ip: 'ip6', map: 'egress6', control: r.controlAddress6 })
  const maps = egressMaps(r)
  const inRules = families.flatMap((f, i) => {
    const to = `notrack ${f.ip} daddr set ${f.control} udp dport set ${cp}`
    const inbound = `meta nfproto ${f.nfproto} udp dport ${wg} fib daddr type local`
    return [
      `    ${inbound} @th,64,32 ${hex(CONTROL_MAGIC_U32)} ${to}${i === 0 ? ` comment "${sharedPortComment(r)}"` : ''}`,
      `    ${inbound} @th,64,16 0x${STUN_BINDING_SUCCESS.toString(16).padStart(4, '0')} @th,96,32 ${hex(STUN_MAGIC_COOKIE)} ${to}`
    ]
  })
  const outRules = families.flatMap(f => {
    const fromSocket = `meta nfproto ${f.nfproto} ${f.ip} saddr ${f.control} udp sport ${cp}`
    return [`    ${fromSocket} notrack ${f.ip} saddr set oifname map @${f.map} udp sport set ${wg} accept`, `    ${fromSocket} drop`]
  })
  return [
    ...families.flatMap(f => {
      const elements = egressElements(maps[f.map])
      return [
        `  map ${f.map} {`,
        `    type ifname : ${f.nfproto}_addr`,
        ...(elements.length > 0 ? [`    elements = { ${elements.join(', ')} }`] : []),
        '  }'
      ]
    }),
    '  chain sharedin {',
    '    type filter hook prerouting priority raw; policy accept;',
    ...inRules,
    '  }',
    '  chain sharedout {',
    '    type filter hook output priority raw; policy accept;',
    ...outRules,
    '  }'
  ]
}

/** changedEgress lists the interfaces whose egress address differs between two maps (added, removed or changed). */
export function changedEgress (prev: Record<string, string>, next: Record<string, string>): string[] {
  return [...new Set([...Object.keys(prev), ...Object.keys(next)])].filter(k => prev[k] !== next[k]).sort()
}

/** countEgressChanges counts the element changes between the egress maps of two rule sets. */
export function countEgressChanges (prev: SharedPortRules | undefined, next: SharedPortRules | undefined): number {
  const a = egressMaps(prev)
  const b = egressMaps(next)
  return EGRESS_MAPS.reduce((n, m) => n + changedEgress(a[m], b[m]).length, 0)
}

/** countEgress counts the elements of both egress maps. */
export function countEgress (r: SharedPortRules | undefined): number {
  return countEgressChanges(undefined, r)
}

/**
 * renderEgressScript renders the element changes that turn the egress maps of one rule
 * set into those of another of the same layout (per map, deletions first); '' when equal.
 */
export function renderEgressScript (prev: SharedPortRules | undefined, next: SharedPortRules | undefined, table: string): string {
  const a = egressMaps(prev)
  const b = egressMaps(next)
  const lines: string[] = []
  for (const map of EGRESS_MAPS) {
    const changed = changedEgress(a[map], b[map])
    const gone = changed.filter(k => a[map][k] !== undefined)
    const come = changed.filter(k => b[map][k] !== undefined)
    if (gone.length > 0) lines.push(`delete element inet ${table} ${map} { ${gone.map(k => `"${k}"`).join(', ')} }`)
    if (come.length > 0) lines.push(`add element inet ${table} ${map} { ${come.map(k => `"${k}" : ${b[map][k]!}`).join(', ')} }`)
  }
  return lines.length === 0 ? '' : lines.join('\n') + '\n'
}

/** parseSharedPortComment reads the parameters back from the marker comment; undefined for any other comment. */
export function parseSharedPortComment (comment: string): Omit<SharedPortRules, 'egress' | 'egress6'> | undefined {
  const m = new RegExp(`^${SHARED_PORT_MARKER} (\\d+) ([\\d.]+):(\\d+)(?: ([\\da-f:]+))?$`).exec(comment)
  if (m === null) return undefined
  return { wgPort: Number(m[1]), controlAddress: m[2]!, controlPort: Number(m[3]), ...(m[4] !== undefined ? { controlAddress6: m[4] } : {}) }
}

/** SharedInPacket is a UDP packet arriving at this node from another network, for traceSharedIn. */
export interface SharedInPacket {
  dport: number
  payload: Uint8Array
  /** whether the destination is one of this host's addresses (default true) */
  local?: boolean
  /** whether it is an IPv6 packet (default false) */
  v6?: boolean
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
  const address = p.v6 === true ? r?.controlAddress6 : r?.controlAddress
  if (r === undefined || address === undefined || p.dport !== r.wgPort || p.local === false) return 'untouched'
  const control = p.payload.length >= 4 && u32(p.payload, 0) === CONTROL_MAGIC_U32
  const stun = p.payload.length >= 8 && u16(p.payload, 0) === STUN_BINDING_SUCCESS && u32(p.payload, 4) === STUN_MAGIC_COOKIE
  return control || stun ? { to: 'control', address, port: r.controlPort } : 'untouched'
}

/** traceSharedOut runs a packet this node sends through `sharedout`: rewritten, dropped or untouched. */
export function traceSharedOut (r: SharedPortRules | undefined, p: SharedOutPacket): { saddr: string, sport: number } | 'drop' | 'untouched' {
  if (r === undefined || p.sport !== r.controlPort) return 'untouched'
  const egress = p.saddr === r.controlAddress ? r.egress : p.saddr === r.controlAddress6 ? r.egress6 : undefined
  if (egress === undefined) return 'untouched'
  const saddr = egress[p.oif]
  return saddr === undefined ? 'drop' : { saddr, sport: r.wgPort }
}
