import { WarrenError, formatIpPrefix, parseIpPrefix } from '@warren/protocol'

/**
 * exit-routing-plan: what a client that sends its internet traffic through an exit node
 * adds to the host's routing, as wg-quick and Tailscale do on Linux: a routing table of
 * Warren's own with default routes (IPv4 and IPv6) into the mesh interface, and policy
 * rules that send everything there except
 * - WireGuard's own UDP to peer endpoints, which carries the fwmark EXIT_FWMARK (`wg set
 *   fwmark`), so the tunnel does not route into itself;
 * - the controller and relays (`bypass`), which the daemon reaches over TCP without a mark;
 * - the daemon's control sockets (`control`: bound to a mesh address, sharing WireGuard's
 *   port through the firewall), whose STUN and path probes must take the same way out as
 *   WireGuard's own packets;
 * - link-local and multicast ranges, and with allow-LAN-access the directly connected
 *   subnets: `throw` routes in the table send them back to the main table.
 * Everything Warren adds is named by its priority (EXIT_PRIORITY..+99) or its table, so a
 * plan against the kernel's state removes exactly what Warren added, and nothing else.
 */

/** EXIT_TABLE is the routing table the default routes go into (0x57a2; Tailscale uses 52). */
export const EXIT_TABLE = 22434
/** EXIT_FWMARK marks WireGuard's own packets, which keep using the main table. */
export const EXIT_FWMARK = '0x57a2'
/** EXIT_PRIORITY is the first rule priority Warren uses (Tailscale's are 5210-5270). */
export const EXIT_PRIORITY = 5310
const LAST_PRIORITY = EXIT_PRIORITY + 99

/** ALWAYS_LOCAL are ranges that never go to an exit node: link-local and multicast. */
export const ALWAYS_LOCAL: readonly string[] = ['169.254.0.0/16', '224.0.0.0/4', 'fe80::/10', 'ff00::/8']

/** ExitRoutingConfig is a client's use of an exit node. */
export interface ExitRoutingConfig {
  /** the mesh interface the default routes go into */
  interfaceName: string
  /** addresses reached outside the mesh without a mark: the controller's, the relays' */
  bypass: string[]
  /** directly connected subnets that stay local (allow-LAN-access); empty otherwise */
  lan: string[]
  /** the daemon's control sockets (mesh address and UDP port) */
  control?: ControlSocket[]
}

/** ControlSocket is where one of the daemon's control sockets is bound. */
export interface ControlSocket { address: string, port: number }

/** ExitItem is one rule or route: `ip -4|-6 rule|route add <spec>` adds it, `del <spec>` removes it. */
export interface ExitItem { family: 4 | 6, kind: 'rule' | 'route', spec: string[] }

/** itemKey names an item, so kernel state and desired state compare as strings. */
export const itemKey = (i: ExitItem): string => `${i.family} ${i.kind} ${i.spec.join(' ')}`

function cidr (text: string, field: string): { text: string, family: 4 | 6 } {
  const p = parseIpPrefix(text)
  if (p === undefined) throw new WarrenError('bad_config', `${field} "${text}" is not an IP address or CIDR`, { field })
  return { text: formatIpPrefix(p), family: p.family }
}

/** desiredExitItems are the rules and routes for a config, IPv4 then IPv6, each in a fixed order. */
export function desiredExitItems (config: ExitRoutingConfig): ExitItem[] {
  const table = String(EXIT_TABLE)
  const out: ExitItem[] = []
  const bypass = config.bypass.map(b => cidr(b, 'bypass'))
  const local = [...ALWAYS_LOCAL, ...config.lan].map(l => cidr(l, 'lan'))
  const control = (config.control ?? []).map(c => ({ ...cidr(c.address, 'control'), port: c.port }))
  for (const family of [4, 6] as const) {
    out.push({ family, kind: 'rule', spec: ['priority', String(EXIT_PRIORITY), 'fwmark', EXIT_FWMARK, 'lookup', 'main'] })
    for (const c of control.filter(x => x.family === family)) {
      out.push({ family, kind: 'rule', spec: ['priority', String(EXIT_PRIORITY + 5), 'from', c.text, 'ipproto', 'udp', 'sport', String(c.port), 'lookup', 'main'] })
    }
    for (const b of [...new Set(bypass.filter(x => x.family === family).map(x => x.text))].sort()) {
      out.push({ family, kind: 'rule', spec: ['priority', String(EXIT_PRIORITY + 10), 'to', b, 'lookup', 'main'] })
    }
    out.push({ family, kind: 'rule', spec: ['priority', String(EXIT_PRIORITY + 60), 'lookup', table] })
    out.push({ family, kind: 'route', spec: [family === 4 ? '0.0.0.0/0' : '::/0', 'dev', config.interfaceName, 'table', table] })
    for (const l of [...new Set(local.filter(x => x.family === family).map(x => x.text))].sort()) {
      out.push({ family, kind: 'route', spec: ['throw', l, 'table', table] })
    }
  }
  return out
}

/** IpRuleJson is what `ip -j rule show` prints per rule (the fields Warren reads). */
export interface IpRuleJson { priority?: number, src?: string, srclen?: number, dst?: string, dstlen?: number, ipproto?: string, sport?: number, fwmark?: string, table?: string }
/** IpRouteJson is what `ip -j route show table N` prints per route (the fields Warren reads). */
export interface IpRouteJson { type?: string, dst?: string, dev?: string }

/** ruleItem reads one kernel rule as an item, if it is in Warren's priority range. */
export function ruleItem (family: 4 | 6, r: IpRuleJson): ExitItem | undefined {
  if (r.priority === undefined || r.priority < EXIT_PRIORITY || r.priority > LAST_PRIORITY) return undefined
  const spec = ['priority', String(r.priority)]
  const host = family === 4 ? 32 : 128
  if (r.src !== undefined && r.src !== 'all') spec.push('from', formatIpPrefix(parseIpPrefix(`${r.src}/${r.srclen ?? host}`)!))
  if (r.dst !== undefined) spec.push('to', formatIpPrefix(parseIpPrefix(`${r.dst}/${r.dstlen ?? host}`)!))
  if (r.ipproto !== undefined) spec.push('ipproto', r.ipproto)
  if (r.sport !== undefined) spec.push('sport', String(r.sport))
  if (r.fwmark !== undefined) spec.push('fwmark', r.fwmark)
  spec.push('lookup', r.table ?? 'main')
  return { family, kind: 'rule', spec }
}

/** routeItem reads one route of Warren's table as an item. */
export function routeItem (family: 4 | 6, r: IpRouteJson): ExitItem | undefined {
  if (r.dst === undefined) return undefined
  const dst = r.dst === 'default' ? (family === 4 ? '0.0.0.0/0' : '::/0') : formatIpPrefix(parseIpPrefix(r.dst.includes('/') ? r.dst : `${r.dst}/${family === 4 ? 32 : 128}`)!)
  const table = String(EXIT_TABLE)
  if (r.type === 'throw') return { family, kind: 'route', spec: ['throw', dst, 'table', table] }
  return { family, kind: 'route', spec: [dst, ...(r.dev !== undefined ? ['dev', r.dev] : []), 'table', table] }
}

/** ExitPlan is what to remove and what to add, each as `ip` commands in a safe order. */
export interface ExitPlan { del: ExitItem[], add: ExitItem[] }

/**
 * planExit compares the kernel's items with the desired ones (none: stop using the exit
 * node). Routes go in before the rule that sends traffic to the table, and the rules come
 * out before the routes, so no packet meets a half-built table.
 */
export function planExit (current: readonly ExitItem[], desired: readonly ExitItem[]): ExitPlan {
  const want = new Set(desired.map(itemKey))
  const have = new Set(current.map(itemKey))
  const rulesFirst = (a: ExitItem, b: ExitItem): number => (a.kind === b.kind ? 0 : a.kind === 'rule' ? -1 : 1)
  return {
    del: current.filter(i => !want.has(itemKey(i))).sort(rulesFirst),
    add: desired.filter(i => !have.has(itemKey(i))).sort((a, b) => -rulesFirst(a, b))
  }
}

/** exitCommands are the `ip` commands of a plan. */
export function exitCommands (plan: ExitPlan): string[][] {
  const cmd = (verb: string) => (i: ExitItem): string[] => ['ip', `-${i.family}`, i.kind, verb, ...i.spec]
  return [...plan.del.map(cmd('del')), ...plan.add.map(cmd('add'))]
}
