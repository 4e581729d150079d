import { EXIT_ROUTES, offersExitNode, type Peer, type RoutingPrefs } from '@warren/protocol'
import type { SharedPortRules } from './types.js'

/**
 * exit-node decides which peer, if any, carries this node's internet traffic: the one
 * `warren up --exit-node` names (by name, full name or mesh address), while the map says it
 * serves both default routes (advertised and approved). A peer that stops offering them,
 * or leaves the map, is no exit node any more: the node's own routes come back.
 */

/** exitPeer is the peer that serves as this node's exit node now, if any. */
export function exitPeer (peers: readonly Peer[], routing: RoutingPrefs): Peer | undefined {
  const want = routing.exitNode?.toLowerCase()
  if (want === undefined || want === '') return undefined
  return peers.find(p => offersExitNode(p.routes ?? []) &&
    [p.name.toLowerCase(), p.fqdn.toLowerCase(), p.fqdn.toLowerCase().replace(/\.$/, ''), p.ipv4, p.ipv6].includes(want))
}

/** exitAllowedIps are the extra WireGuard allowed-ips of the exit peer: both default routes. */
export function exitAllowedIps (peer: Peer, exit: Peer | undefined): string[] {
  return exit !== undefined && exit.wgKey === peer.wgKey ? [...EXIT_ROUTES] : []
}

/** controlSockets are where the daemon's control sockets are bound (shared-port rules), which an exit node must not carry. */
export function controlSockets (shared: SharedPortRules | undefined): Array<{ address: string, port: number }> {
  if (shared === undefined) return []
  const port = shared.controlPort
  return [{ address: shared.controlAddress, port }, ...(shared.controlAddress6 !== undefined ? [{ address: shared.controlAddress6, port }] : [])]
}
