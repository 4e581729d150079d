import { WarrenError, MESH_IPV4_CIDR, createSerialQueue, isExitRoute, isKeyExpired, type Netmap, type Peer } from '@warren/protocol'
import { normalizeCidr } from '../router/cidr.js'
import type { WireGuard, WireGuardConfig } from '../wireguard/types.js'
import type { Router, RouterConfig } from '../router/types.js'
import { NO_FORWARDING, type Forwarding } from '../router/forwarding.js'
import type { Engine, EngineLocal, Firewall, DnsConfigurator, ApplyResult } from './types.js'
import { NO_ROUTING, routesInUse, selfRoutes, splitFilter } from './subnet-routes.js'
import { controlSockets, exitAllowedIps, exitPeer } from './exit-node.js'
import type { ExitRouting } from '../router/exit-routing.js'

/** PERSISTENT_KEEPALIVE keeps NAT mappings open toward every peer (seconds). */
export const PERSISTENT_KEEPALIVE = 25

/** MESH_IPV6_PREFIX_LENGTH is the size of the mesh's ULA prefix: one /48 per tailnet. */
export const MESH_IPV6_PREFIX_LENGTH = 48

/** EngineComponents are the adapters the engine drives; firewall and DNS are optional. */
export interface EngineComponents {
  wireguard: WireGuard
  router: Router
  firewall?: Firewall
  dns?: DnsConfigurator
  /** forwarding switches IP forwarding on for the routes this node serves; without it the node serves none */
  forwarding?: Forwarding
  /** exitRouting sends internet traffic through the exit node `warren up --exit-node` names; without it none is used */
  exitRouting?: ExitRouting
  /** the clock for key expiry; tests pass their own */
  now?: () => Date
}

/** isSelfActive says whether this node may have peers: approved and its key not expired. */
export function isSelfActive (netmap: Netmap, now = new Date()): boolean {
  return netmap.self.status === 'active' && !isKeyExpired(netmap.self.keyExpiry, now.getTime())
}

function endpointFor (p: Peer, chosen: ReadonlyMap<string, string> | undefined): { endpoint?: string, endpointPinned?: boolean } {
  const pinned = chosen?.get(p.wgKey)
  if (pinned !== undefined) return { endpoint: pinned, endpointPinned: true }
  return p.endpoints[0] !== undefined ? { endpoint: p.endpoints[0] } : {}
}

/** activePeers are the peers WireGuard gets: none for a pending or expired self, and never one whose key expired or is our own. */
function activePeers (netmap: Netmap, now: Date): Peer[] {
  return isSelfActive(netmap, now)
    ? netmap.peers.filter((p: Peer) => !isKeyExpired(p.keyExpiry, now.getTime()) && p.wgKey !== netmap.self.wgKey)
    : []
}

/**
 * desiredWireGuard is the WireGuard state for a netmap: each peer reaches exactly its
 * two mesh addresses and the subnet routes this node sends through it (routesInUse),
 * at the endpoint the path manager chose (`local.endpoints`), else
 * at its first known endpoint. Peers whose key expired, or that
 * repeat our own key, are left out; a pending or expired self gets no peers at all.
 */
export function desiredWireGuard (netmap: Netmap, local: EngineLocal, now = new Date()): WireGuardConfig {
  const peers = activePeers(netmap, now)
  const seen = new Set<string>()
  const routes = routesInUse(peers, local.routing ?? NO_ROUTING)
  const exit = exitPeer(peers, local.routing ?? NO_ROUTING)
  return {
    interfaceName: local.interfaceName,
    privateKey: local.privateKey,
    ...(local.listenPort !== undefined ? { listenPort: local.listenPort } : {}),
    peers: peers.filter(p => !seen.has(p.wgKey) && seen.add(p.wgKey) !== undefined).map(p => ({
      publicKey: p.wgKey,
      allowedIps: [`${p.ipv4}/32`, `${p.ipv6}/128`, ...(routes.get(p.wgKey) ?? []), ...exitAllowedIps(p, exit)],
      ...endpointFor(p, local.endpoints),
      persistentKeepalive: PERSISTENT_KEEPALIVE
    }))
  }
}

/**
 * desiredRouter is this node's mesh addresses, the routes to the whole mesh, and the
 * subnet routes it sends through peers (with --accept-routes; routesInUse).
 */
export function desiredRouter (netmap: Netmap, local: Pick<EngineLocal, 'interfaceName' | 'routing'>, now = new Date()): RouterConfig {
  const { ipv4, ipv6 } = netmap.self
  const subnets = [...routesInUse(activePeers(netmap, now), local.routing ?? NO_ROUTING).values()].flat()
  return {
    interfaceName: local.interfaceName,
    addresses: [`${ipv4}/32`, `${ipv6}/128`],
    routes: [MESH_IPV4_CIDR, normalizeCidr(`${ipv6}/${MESH_IPV6_PREFIX_LENGTH}`, 'self.ipv6'), ...subnets]
  }
}

/** createEngine returns an Engine over the given adapters. */
export function createEngine (components: EngineComponents): Engine {
  const { wireguard, router, firewall, dns, forwarding, exitRouting } = components
  const now = components.now ?? (() => new Date())
  const queue = createSerialQueue()

  async function stage<T> (name: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn()
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e)
      throw new WarrenError('apply_failed', `applying the network map failed at ${name}: ${why}`, { status: 500, cause: e })
    }
  }

  async function applyNow (netmap: Netmap, local: EngineLocal): Promise<ApplyResult> {
    const started = performance.now()
    const at = now()
    const active = isSelfActive(netmap, at)
    const wgConfig = desiredWireGuard(netmap, local, at)
    const routerConfig = desiredRouter(netmap, local, at)
    const routing = local.routing ?? NO_ROUTING
    const served = active && forwarding !== undefined && firewall !== undefined ? selfRoutes(netmap, routing) : []
    const plan = served.length > 0 ? await stage('forwarding', async () => await forwarding!.plan({ interfaceName: local.interfaceName, routes: served })) : NO_FORWARDING
    const { inbound, forward } = splitFilter(active ? netmap.filter : [])
    // The filter goes first: a revoked peer loses access before anything else moves,
    // and it judges by interface name, so it may exist before the interface does.
    // Forwarding is switched on only once the forward filter judges what it lets through.
    if (firewall !== undefined) {
      await stage('firewall', async () => await firewall.set(inbound, {
        interfaceName: local.interfaceName,
        ...(local.sharedPort !== undefined ? { sharedPort: local.sharedPort } : {}),
        ...(served.length > 0 ? { subnetRouter: { routes: served, filter: forward, snat: routing.snatSubnetRoutes || served.some(isExitRoute), lockedInterfaces: plan.lockedInterfaces } } : {})
      }))
    }
    // Leaving an exit node: the host's own routes first, then WireGuard drops the default routes.
    const exit = exitRouting !== undefined ? exitPeer(activePeers(netmap, at), routing) : undefined
    if (exitRouting !== undefined && exit === undefined) await stage('exit node', async () => await exitRouting.set(undefined))
    const wg = await stage('wireguard', async () => await wireguard.set(wgConfig))
    // After WireGuard: the mesh interface's forwarding switch exists only with the interface
    // (which a restarted daemon may have had to make anew).
    if (forwarding !== undefined) await stage('forwarding', async () => await forwarding.set(plan))
    const routes = await stage('router', async () => await router.set(routerConfig))
    if (exitRouting !== undefined && exit !== undefined) {
      const request = { interfaceName: local.interfaceName, bypass: local.exitBypass ?? [], allowLanAccess: routing.exitNodeAllowLanAccess === true, control: controlSockets(local.sharedPort) }
      await stage('exit node', async () => await exitRouting.set(request))
    }
    if (dns !== undefined) await stage('dns', async () => await dns.set(active ? netmap : { ...netmap, peers: [] }))
    return { durationMs: performance.now() - started, active, peers: wgConfig.peers.length, wireguard: wg, router: routes }
  }

  return {
    apply: async (netmap, local) => await queue.run(async () => await applyNow(netmap, local)),
    applyWireGuard: async (netmap, local) => await queue.run(async () => await stage('wireguard', async () => await wireguard.set(desiredWireGuard(netmap, local, now())))),
    close: async () => await queue.run(async () => {
      // Everything is attempted; the first failure is reported after.
      const errors: unknown[] = []
      const steps = [async () => await exitRouting?.close(), async () => await forwarding?.close(), async () => await dns?.close?.(), async () => await router.close(), async () => await wireguard.close(), async () => await firewall?.close()]
      for (const step of steps) await step().catch(e => errors.push(e))
      if (errors.length > 0) throw errors[0]
    })
  }
}
