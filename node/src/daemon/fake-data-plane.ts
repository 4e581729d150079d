import type { DataPlaneInfo, Netmap, RoutingPrefs } from '@warren/protocol'
import type { WireGuardPeerStatus } from '../wireguard/types.js'
import type { DataPlane } from './data-plane.js'
import type { SharedPort } from '../nat/types.js'

/** FakeDataPlane records what the daemon asked for, and stands in for the system in tests. */
export interface FakeDataPlane extends DataPlane {
  /** every netmap applied, in order */
  readonly applied: Netmap[]
  /** the route settings given with each applied netmap */
  readonly routings: Array<RoutingPrefs | undefined>
  /** installed is true while the interface and firewall table would exist on the system */
  readonly installed: boolean
  readonly downCalls: number
  readonly released: boolean
  /** every endpoint choice the daemon passed on, in order */
  readonly endpointSets: Array<Map<string, string>>
  /** stats lets a test set what `wg show dump` would report */
  stats: WireGuardPeerStatus[]
  /** failNextApply makes the next apply throw, as a failing `wg` or `nft` would */
  failNextApply?: Error
}

/**
 * createFakeDataPlane returns a fake whose kernel-side state (`installed`) can outlive a
 * daemon, as the real one does: pass the same fake to a restarted daemon.
 */
export function createFakeDataPlane (opts: { listenPort?: number, pingMs?: number, sharedPort?: SharedPort, implementation?: DataPlaneInfo } = {}): FakeDataPlane {
  let installed = false
  let downCalls = 0
  let released = false
  const fake: FakeDataPlane = {
    applied: [],
    routings: [],
    endpointSets: [],
    stats: [],
    get installed () { return installed },
    get downCalls () { return downCalls },
    get released () { return released },
    async apply (netmap, routing) {
      if (fake.failNextApply !== undefined) {
        const e = fake.failNextApply
        delete fake.failNextApply
        throw e
      }
      released = false
      installed = true
      fake.applied.push(netmap)
      fake.routings.push(routing)
    },
    async setPeerEndpoints (endpoints) { fake.endpointSets.push(new Map(endpoints)) },
    async peerStats () { return installed ? fake.stats : [] },
    implementation: () => installed ? (opts.implementation ?? { implementation: 'wireguard-go' }) : undefined,
    listenPort: () => opts.listenPort ?? 41641,
    // the shared port exists while the interface would (it binds on the mesh address)
    sharedPort: () => installed ? opts.sharedPort : undefined,
    async ping () { return opts.pingMs ?? 1.5 },
    async down () { installed = false; downCalls++ },
    async release () { released = true }
  }
  return fake
}
