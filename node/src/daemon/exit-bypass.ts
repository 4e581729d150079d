import { lookup } from 'node:dns/promises'
import { isIP } from 'node:net'
import type { Netmap } from '@warren/protocol'

/**
 * exitBypassHosts are the hosts the daemon reaches outside WireGuard: the controller (its
 * URL), the relays' UDP and TLS addresses, and the STUN servers. While an exit node is in
 * use they keep the host's own routes, or the map session would go into the tunnel it
 * configures.
 */
export function exitBypassHosts (netmap: Netmap, controller: string | undefined): string[] {
  const hosts = new Set<string>()
  const controllerHost = controller === undefined ? undefined : hostOf(controller)
  if (controllerHost !== undefined) hosts.add(controllerHost)
  for (const r of netmap.nat?.relays ?? []) {
    if (r.udp !== undefined) hosts.add(endpointHost(r.udp))
    if (r.tls !== undefined) { const h = hostOf(r.tls); if (h !== undefined) hosts.add(h) }
  }
  for (const s of netmap.nat?.stun ?? []) { const h = endpointHost(s); if (h !== '') hosts.add(h) }
  return [...hosts]
}

function hostOf (url: string): string | undefined {
  try { return new URL(url).hostname.replace(/^\[|\]$/g, '') } catch { return undefined }
}

function endpointHost (endpoint: string): string {
  const i = endpoint.lastIndexOf(':')
  return (i < 0 ? endpoint : endpoint.slice(0, i)).replace(/^\[|\]$/g, '')
}

/** resolveBypass turns hosts into addresses; a name that does not resolve is left out (the daemon cannot reach it either). */
export async function resolveBypass (hosts: readonly string[]): Promise<string[]> {
  const out = new Set<string>()
  for (const h of hosts) {
    if (isIP(h) !== 0) { out.add(h); continue }
    for (const a of await lookup(h, { all: true }).catch(() => [])) out.add(a.address)
  }
  return [...out].sort()
}
