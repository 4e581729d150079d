import {
  WarrenError, capabilitiesOf, parseHostPort, parseIpAddress,
  type Node, type Peer, type LocalIpResponse, type LocalPingResponse, type LocalWhoisResponse
} from '@warren/protocol'
import type { DaemonContext } from './daemon-context.js'

/**
 * node-lookup.ts answers the LocalAPI questions about one node of the mesh (ip, ping,
 * whois), found by name, full name or mesh address in the current map.
 */

function allNodes (d: DaemonContext): Array<{ node: Peer | Node, self: boolean }> {
  const { netmap, login } = d
  if (netmap === undefined) return login !== undefined ? [{ node: login.node, self: true }] : []
  return [{ node: netmap.self, self: true }, ...netmap.peers.map(p => ({ node: p, self: false }))]
}

function findNode (d: DaemonContext, q: string): { node: Peer | Node, self: boolean } {
  const want = q.trim().toLowerCase().replace(/\.$/, '')
  const addr = parseIpAddress(want)
  const isAddr = (text: string): boolean => { const a = parseIpAddress(text); return a !== undefined && a.family === addr!.family && a.network === addr!.network }
  const hit = allNodes(d).find(({ node }) => addr !== undefined
    ? isAddr(node.ipv4) || isAddr(node.ipv6)
    : node.name === want || node.fqdn.replace(/\.$/, '') === want)
  if (hit === undefined) {
    throw new WarrenError('unknown_peer', `'${q}' is not a peer of this node (by name, full name or mesh address); 'warren status' lists the peers`, { status: 404, field: 'peer' })
  }
  return hit
}

function requireMap (d: DaemonContext): void {
  if (allNodes(d).length === 0) throw new WarrenError('not_running', 'this node has not joined a mesh yet: run \'warren up --controller URL --auth-key KEY\'', { status: 409 })
}

/** localIp is `warren ip`: this node's mesh addresses, or a peer's. */
export function localIp (d: DaemonContext, peer?: string, family?: 4 | 6): LocalIpResponse {
  requireMap(d)
  const { node } = peer === undefined || peer === '' ? allNodes(d)[0]! : findNode(d, peer)
  const addresses = family === 4 ? [node.ipv4] : family === 6 ? [node.ipv6] : [node.ipv4, node.ipv6]
  return { name: node.name, addresses }
}

/** localPing is `warren ping`: one ping over the mesh, and whether the path is direct. */
export async function localPing (d: DaemonContext, peer: string): Promise<LocalPingResponse> {
  requireMap(d)
  if (d.state === 'Stopped') throw new WarrenError('not_running', 'the mesh is down: run \'warren up\' first', { status: 409 })
  const { node } = findNode(d, peer)
  let addr = node.ipv4
  if (parseIpAddress(peer.trim())?.family === 6) addr = node.ipv6
  let latencyMs: number
  try { latencyMs = await d.dataPlane.ping(addr) } catch (e) {
    d.metrics.errors.labels('ping').inc()
    throw new WarrenError('ping_failed', `no reply from ${node.name} (${addr}) over the mesh: ${(e as Error).message}`, { status: 504 })
  }
  const st = (await d.dataPlane.peerStats().catch(() => [])).find(s => s.publicKey === node.wgKey)
  return {
    peer: node.name, address: addr, latencyMs,
    direct: st?.endpoint !== undefined || node.wgKey === d.netmap?.self.wgKey,
    ...(st?.endpoint !== undefined ? { endpoint: st.endpoint } : {})
  }
}

/** whoisAddress reads `IP`, `IP:port` or `[IPv6]:port` (a caller as a server sees it); the port does not matter. */
function whoisAddress (text: string): string {
  const t = text.trim()
  const bare = parseIpAddress(t) !== undefined ? t : /^[^:]+:\d+$|^\[.*\]:\d+$/.test(t) ? parseHostPort(t, 'ip').host : undefined
  if (bare === undefined || parseIpAddress(bare) === undefined) {
    throw new WarrenError('bad_ip', `'${text}' is not an IP address: pass a mesh address such as 100.64.0.2, 100.64.0.2:443 or [fd7a:115c:a1e0::2]:443`, { field: 'ip' })
  }
  return bare
}

/**
 * localWhois is `warren whois`: which node, user and tags own a mesh address, and the
 * capabilities the policy gives that address on this node (from the map's capability
 * rules, which only the destination of a grant receives).
 */
export function localWhois (d: DaemonContext, addr: string): LocalWhoisResponse {
  const ip = whoisAddress(addr)
  requireMap(d)
  const { node, self } = findNode(d, ip)
  return {
    node: { id: node.id, name: node.name, fqdn: node.fqdn, ipv4: node.ipv4, ipv6: node.ipv6, tags: node.tags },
    ...(node.user !== undefined ? { user: node.user } : {}),
    tags: node.tags,
    self,
    capabilities: capabilitiesOf(d.netmap?.filter ?? [], ip)
  }
}
