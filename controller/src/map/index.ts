/**
 * The live network map: one WebSocket session per node at /v1/machine/map, a signed
 * challenge, the full map, then coalesced, sequenced deltas for exactly the nodes a
 * change affects.
 *
 * Parts, in the order a change flows through them: mesh-policy.ts (MeshPolicy, the one
 * writer of the policy engine: node membership, policy and users), fanout.ts with
 * delta-queues.ts (which sessions a change affects, and their queued, numbered deltas;
 * no sockets, testable alone), sessions.ts with handshake.ts (challenge, signed hello,
 * version, one session per node, presence), wire.ts with outbox.ts (framing,
 * back-pressure, keepalives), and map-service.ts, which wires them together.
 *
 * @example
 * ```ts
 * import { startController } from '@warren/controller'
 * const service = { current: undefined as MapService | undefined }
 * const c = await startController({ stateDir, listen: ':8443', onServer: mapServerHook({ onStart: s => { service.current = s } }) })
 * ```
 */
import type { Server as HttpsServer } from 'node:https'
import type { ServerHook } from '../server-hooks.js'
import { createPolicyEngine, defaultPolicy } from '../policy/index.js'
import { mountMapService, type MapService, type MapServiceOptions } from './map-service.js'
import type { MapPolicy } from './types.js'

export * from './map-service.js'
export * from './types.js'
export { MapCloseCode, type MapRefusal } from './handshake.js'
export { createMeshPolicy, NO_POLICY_CHANGE, type MeshPolicy, type MeshListener, type PeerReader, type NodeChangeReport } from './mesh-policy.js'
export { createMapFanout, type MapFanout, type FanoutSession, type MembershipChange } from './fanout.js'
export { checkEndpoints } from './endpoints.js'
export { createMapMetrics, type MapMetrics } from './metrics.js'

export type MapServerHookOptions = Omit<MapServiceOptions, 'source' | 'policy' | 'domain' | 'registry' | 'log'> & {
  /** the policy engine; default: the default (allow-all) policy */
  policy?: MapPolicy
  /** called with the running service, so policy changes can go to its mesh (service.mesh.setPolicy) */
  onStart?: (service: MapService) => void
}

/**
 * mapServerHook mounts the map service on the controller's HTTPS server
 * (`startController({ onServer: mapServerHook() })`), over the controller's state,
 * metrics registry and log. The service is closed with the controller.
 */
export function mapServerHook (opts: MapServerHookOptions = {}): ServerHook {
  return (server: HttpsServer, ctx) => {
    const { policy, onStart, ...rest } = opts
    const service = mountMapService(server, {
      ...rest,
      source: ctx.state,
      policy: policy ?? createPolicyEngine(defaultPolicy(), ctx.state.listUsers(), { meshIpv6: ctx.state.ulaPrefix }),
      domain: ctx.state.domain,
      registry: ctx.metrics.registry,
      log: ctx.log.child({ module: 'map' })
    })
    onStart?.(service)
    return service
  }
}
