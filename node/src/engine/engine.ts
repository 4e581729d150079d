import { WarrenError, MESH_IPV4_CIDR, createSerialQueue, isKeyExpired, type Netmap, type Peer } from '@warren/protocol'
import { normalizeCidr } from '../router/cidr.js'
import type { WireGuard, WireGuardConfig } from '../wireguard/types.js'
import type { Router, RouterConfig } from '../router/types.js'
import type { Engine, EngineLocal, Firewall, DnsConfigurator, ApplyResult } from './types.js'

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
  /** the clock for key expiry; tests pass their own */
  now?: () => Date
}

/** isSelfActive says whether this node may have peers: approved and its key not expired. */
export function isSelfActive (netmap: Netmap, now = new Date()): boolean {
  return netmap.self.status === 'active' && !isKeyExpired(netmap.self.keyExpiry, now.getTime())
}

function endpointFor (p: Peer, chosen: ReadonlyMap<string, string> | undefined): { endpoint?: string } {
  const endpoint = chosen?.get(p.wgKey) ?? p.endpoints[0]
  return endpoint !== undefined ? { endpoint } : {}
}

/**
 * desiredWireGuard is the WireGuard state for a netmap: each peer reaches exactly its
 * two mesh addresses, at the endpoint the path manager chose (`local.endpoints`), else
 * at its first known endpoint. Peers whose key expired, or that
 * repeat our own key, are left out; a pending or expired self gets no peers at all.
 */
export function desiredWireGuard (netmap: Netmap, local: EngineLocal, now = new Date()): WireGuardConfig {
  const peers = isSelfActive(netmap, now)
    ? netmap.peers.filter((p: Peer) => !isKeyExpired(p.keyExpiry, now.getTime()) && p.wgKey !== netmap.self.wgKey)
    : []
  const seen = new Set<string>()
  return {
    interfaceName: local.interfaceName,
    privateKey: local.privateKey,
    ...(local.listenPort !== undefined ? { listenPort: local.listenPort } : {}),
    peers: peers.filter(p => !seen.has(p.wgKey) && seen.add(p.wgKey) !== undefined).map(p => ({
      publicKey: p.wgKey,
      allowedIps: [`${p.ipv4}/32`, `${p.ipv6}/128`],
      ...endpointFor(p, local.endpoints),
      persistentKeepalive: PERSISTENT_KEEPALIVE
    }))
  }
}

/** desiredRouter is this node's mesh addresses and the routes to the whole mesh. */
export function desiredRouter (netmap: Netmap, interfaceName: string): RouterConfig {
  const { ipv4, ipv6 } = netmap.self
  return {
    interfaceName,
    addresses: [`${ipv4}/32`, `${ipv6}/128`],
    routes: [MESH_IPV4_CIDR, normalizeCidr(`${ipv6}/${MESH_IPV6_PREFIX_LENGTH}`, 'self.ipv6')]
  }
}

/** createEngine returns an Engine over the given adapters. */
export function createEngine (components: EngineComponents): Engine {
  const { wireguard, router, firewall, dns } = components
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
    const routerConfig = desiredRouter(netmap, local.interfaceName)
    // The filter goes first: a revoked peer loses access before anything else moves,
    // and it judges by interface name, so it may exist before the interface does.
    if (firewall !== undefined) await stage('firewall', async () => await firewall.set(active ? netmap.filter : [], { interfaceName: local.interfaceName, ...(local.sharedPort !== undefined ? { sharedPort: local.sharedPort } : {}) }))
    const wg = await stage('wireguard', async () => await wireguard.set(wgConfig))
    const routes = await stage('router', async () => await router.set(routerConfig))
    if (dns !== undefined) await stage('dns', async () => await dns.set(active ? netmap : { ...netmap, peers: [] }))
    return { durationMs: performance.now() - started, active, peers: wgConfig.peers.length, wireguard: wg, router: routes }
  }

  return {
    apply: async (netmap, local) => await queue.run(async () => await applyNow(netmap, local)),
    applyWireGuard: async (netmap, local) => await queue.run(async () => await stage('wireguard', async () => await wireguard.set(desiredWireGuard(netmap, local, now())))),
    close: async () => await queue.run(async () => {
      // Everything is attempted; the first failure is reported after.
      const errors: unknown[] = []
      const steps = [async () => await dns?.close?.(), async () => await router.close(), async () => await wireguard.close(), async () => await firewall?.close()]
      for (const step of steps) await step().catch(e => errors.push(e))
      if (errors.length > 0) throw errors[0]
    })
  }
}
