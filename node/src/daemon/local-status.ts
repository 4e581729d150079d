import { EXIT_ROUTES, PROTOCOL_VERSION, type LocalStatus, type LocalPeerStatus, type LocalPeers, type LocalMeshPeer, type Peer } from '@warren/protocol'
import type { DaemonContext } from './daemon-context.js'
import { NO_ROUTING, routesInUse } from '../engine/subnet-routes.js'
import { exitPeer } from '../engine/exit-node.js'

/** meshPeer is a peer as the map has it. */
function meshPeer (p: Peer): LocalMeshPeer {
  return { id: p.id, name: p.name, fqdn: p.fqdn, ...(p.user !== undefined ? { user: p.user } : {}), tags: p.tags, ipv4: p.ipv4, ipv6: p.ipv6, wgKey: p.wgKey, online: p.online }
}

const byName = (a: { name: string }, b: { name: string }): number => a.name.localeCompare(b.name)

/** localPeers is GET /v1/peers: this node and its peers from the map alone, for name lookups. */
export function localPeers (d: DaemonContext): LocalPeers {
  const { state, netmap, login } = d
  const self = netmap?.self ?? login?.node
  return { backendState: state, ...(self !== undefined ? { self } : {}), peers: (netmap?.peers ?? []).map(meshPeer).sort(byName) }
}

/** localStatus is `warren status`: the backend state, health and every peer with its traffic. */
export async function localStatus (d: DaemonContext): Promise<LocalStatus> {
  const stats = d.state === 'Stopped' || d.state === 'NeedsLogin' && d.netmap === undefined ? [] : await d.dataPlane.peerStats().catch(() => [])
  // Read after the await: an up or down may have changed the state meanwhile.
  const { state, netmap, login } = d
  const byKey = new Map(stats.map(s => [s.publicKey, s]))
  const inUse = routesInUse(netmap?.peers ?? [], login?.routing ?? NO_ROUTING)
  const exit = exitPeer(netmap?.peers ?? [], login?.routing ?? NO_ROUTING)
  if (exit !== undefined) inUse.set(exit.wgKey, [...(inUse.get(exit.wgKey) ?? []), ...EXIT_ROUTES])
  const peers: LocalPeerStatus[] = (netmap?.peers ?? []).map(p => {
    const st = byKey.get(p.wgKey)
    const path = d.paths.path(p.wgKey)
    return {
      ...meshPeer(p),
      ...(st?.endpoint !== undefined ? { endpoint: st.endpoint } : {}),
      ...(st?.latestHandshake !== undefined ? { lastHandshake: st.latestHandshake.toISOString() } : {}),
      rxBytes: st?.rxBytes ?? 0,
      txBytes: st?.txBytes ?? 0,
      ...(path !== undefined ? { path: { ...path } } : {}),
      ...(p.routes !== undefined ? { routes: p.routes } : {}),
      ...(p.primaryRoutes !== undefined ? { primaryRoutes: p.primaryRoutes } : {}),
      ...(inUse.has(p.wgKey) ? { routesInUse: inUse.get(p.wgKey)! } : {})
    }
  }).sort(byName)
  const self = netmap?.self ?? login?.node
  const dataPlane = d.dataPlane.implementation()
  return {
    version: PROTOCOL_VERSION,
    backendState: state,
    health: [...d.health.values()],
    ...(login !== undefined ? { controller: { url: login.controller, connected: d.session?.state === 'connected' } } : {}),
    ...(d.authUrl !== undefined ? { authUrl: d.authUrl } : {}),
    interfaceName: d.interfaceName,
    ...(dataPlane !== undefined ? { dataPlane } : {}),
    ...(self !== undefined ? { self } : {}),
    peers,
    ...(login?.routing !== undefined ? { routing: login.routing } : {})
  }
}
