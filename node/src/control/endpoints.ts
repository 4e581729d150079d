import os from 'node:os'
import ipaddr from 'ipaddr.js'
import { MESH_IPV4_CIDR } from '@warren/protocol'

/** EndpointsInit says which interface is the mesh (never advertised) and the WireGuard port. */
export interface EndpointsInit {
  meshInterface: string
  listenPort: number
  /** interfaces() defaults to os.networkInterfaces(); tests pass a table */
  interfaces?: () => NodeJS.Dict<os.NetworkInterfaceInfo[]>
}

const MESH_V4 = ipaddr.parseCIDR(MESH_IPV4_CIDR)

/** HostAddress is one usable address of a non-mesh interface. */
export interface HostAddress { interface: string, ip: ipaddr.IPv4 | ipaddr.IPv6 }

/**
 * hostAddresses lists the addresses this host has on non-mesh interfaces that another
 * host could reach: loopback, link-local, multicast and mesh addresses are left out.
 */
export function hostAddresses (init: Omit<EndpointsInit, 'listenPort'>): HostAddress[] {
  const out: HostAddress[] = []
  const table = (init.interfaces ?? os.networkInterfaces)()
  for (const [name, addrs] of Object.entries(table)) {
    if (name === init.meshInterface || addrs === undefined) continue
    for (const a of addrs) {
      if (a.internal) continue
      let ip: ipaddr.IPv4 | ipaddr.IPv6
      try { ip = ipaddr.parse(a.address.replace(/%.*$/, '')) } catch { continue }
      const range = ip.range()
      if (range === 'loopback' || range === 'linkLocal' || range === 'unspecified' || range === 'multicast') continue
      if (ip.kind() === 'ipv4' && (ip as ipaddr.IPv4).match(MESH_V4 as [ipaddr.IPv4, number])) continue
      out.push({ interface: name, ip })
    }
  }
  return out
}

/**
 * localEndpoints lists `addr:port` for every address this host has on a non-mesh
 * interface: where peers may reach our WireGuard port directly. Loopback, link-local
 * and mesh addresses are left out since no peer can use them. Sorted, so a change is
 * a change of content, not of order.
 */
export function localEndpoints (init: EndpointsInit): string[] {
  const out = new Set<string>()
  for (const { ip } of hostAddresses(init)) {
    out.add(ip.kind() === 'ipv6' ? `[${ip.toString()}]:${init.listenPort}` : `${ip.toString()}:${init.listenPort}`)
  }
  return [...out].sort().slice(0, 32)
}

/**
 * egressAddresses maps each non-mesh interface with an address of the family to one of
 * them: the source address the shared-port rules give the control socket's packets
 * leaving by it. IPv4: the first. IPv6: the first global one, else the first ULA, so
 * that a probe to a global address comes from one its answer can reach.
 */
export function egressAddresses (init: Omit<EndpointsInit, 'listenPort'>, family: 4 | 6 = 4): Record<string, string> {
  const out: Record<string, string> = {}
  const rank = (ip: ipaddr.IPv4 | ipaddr.IPv6): number => ip.range() === 'uniqueLocal' ? 1 : 0
  const found = hostAddresses(init).filter(a => a.ip.kind() === `ipv${family}`)
  for (const { interface: name, ip } of found.sort((a, b) => rank(a.ip) - rank(b.ip))) {
    out[name] ??= ip.toString()
  }
  return out
}
