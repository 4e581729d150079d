import { WarrenError } from '@warren/protocol'
import { normalizeAddress, normalizeCidr, checkInterfaceName, isIpv6Prefix } from './cidr.js'
import type { RouterConfig, RouterChanges } from './types.js'

/** LinkState is what Warren manages on the interface: global addresses and non-kernel routes. */
export interface LinkState {
  up: boolean
  mtu: number
  addresses: string[]
  routes: string[]
}

/** RouterPlan is the minimal set of changes from a LinkState to a RouterConfig. */
export interface RouterPlan {
  mtu?: number
  bringUp: boolean
  addAddresses: string[]
  delAddresses: string[]
  addRoutes: string[]
  delRoutes: string[]
}

/** checkRouterConfig validates a desired config and returns it normalized and sorted. */
export function checkRouterConfig (c: RouterConfig): RouterConfig {
  checkInterfaceName(c.interfaceName)
  if (c.mtu !== undefined && (!Number.isInteger(c.mtu) || c.mtu < 1280 || c.mtu > 65535)) {
    throw new WarrenError('bad_config', `router config: MTU ${String(c.mtu)} is out of range: use 1280-65535 (WireGuard's usual is 1420)`, { field: 'mtu' })
  }
  const addresses = [...new Set((c.addresses ?? []).map((a, i) => normalizeAddress(a, `addresses[${i}]`)))].sort()
  const routes = [...new Set((c.routes ?? []).map((r, i) => normalizeCidr(r, `routes[${i}]`)))].sort()
  return { interfaceName: c.interfaceName, addresses, routes, ...(c.mtu !== undefined ? { mtu: c.mtu } : {}) }
}

/** planRouter compares current link state with the (checked) desired config. */
export function planRouter (current: LinkState, desired: RouterConfig): RouterPlan {
  const have = { addresses: new Set(current.addresses), routes: new Set(current.routes) }
  const want = { addresses: new Set(desired.addresses), routes: new Set(desired.routes) }
  return {
    ...(desired.mtu !== undefined && desired.mtu !== current.mtu ? { mtu: desired.mtu } : {}),
    bringUp: !current.up,
    addAddresses: desired.addresses.filter(a => !have.addresses.has(a)),
    delAddresses: current.addresses.filter(a => !want.addresses.has(a)).sort(),
    addRoutes: desired.routes.filter(r => !have.routes.has(r)),
    delRoutes: current.routes.filter(r => !want.routes.has(r)).sort()
  }
}

/** routerChanges summarizes a plan for callers and metrics. */
export function routerChanges (p: RouterPlan): RouterChanges {
  return {
    link: p.bringUp || p.mtu !== undefined,
    addressesAdded: p.addAddresses,
    addressesRemoved: p.delAddresses,
    routesAdded: p.addRoutes,
    routesRemoved: p.delRoutes
  }
}

const family = (cidr: string): string[] => isIpv6Prefix(cidr) ? ['ip', '-6'] : ['ip']

/**
 * linkCommands turns the link and address part of a plan into `ip` argvs: link first
 * (routes need an up link), new addresses before old ones go (so the link is never left
 * without one while an address moves). IPv6 addresses skip duplicate address detection,
 * which on a point-to-point tunnel only delays them.
 */
export function linkCommands (ifname: string, p: RouterPlan): string[][] {
  return [
    ...(p.mtu !== undefined ? [['ip', 'link', 'set', 'dev', ifname, 'mtu', String(p.mtu)]] : []),
    ...(p.bringUp ? [['ip', 'link', 'set', 'dev', ifname, 'up']] : []),
    ...p.addAddresses.map(a => [...family(a), 'addr', 'add', a, 'dev', ifname, ...(isIpv6Prefix(a) ? ['nodad'] : [])]),
    ...p.delAddresses.map(a => [...family(a), 'addr', 'del', a, 'dev', ifname])
  ]
}

/** routeCommands turns the route part of a plan into `ip` argvs: removals, then additions. */
export function routeCommands (ifname: string, p: RouterPlan): string[][] {
  return [
    ...p.delRoutes.map(r => [...family(r), 'route', 'del', r, 'dev', ifname]),
    ...p.addRoutes.map(r => [...family(r), 'route', 'replace', r, 'dev', ifname])
  ]
}
