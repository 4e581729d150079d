import { Counter, Gauge, type Registry } from 'prom-client'
import { RELAY_LINK_PATH, type Node } from '@warren/protocol'
import { createTlsRelay as createTlsRelayEngine, type TlsRelay, type TlsRelayOptions, type TlsRelayMembers } from '@warren/relay'
import { MAP_PATH } from '../map/map-service.js'
import { mayConnect } from '../map/handshake.js'
import type { PeerReader } from '../map/mesh-policy.js'
import type { MapLogger, MapNodeEvents } from '../map/types.js'

export type { TlsRelay, TlsRelayOptions, TlsRelayStats } from '@warren/relay'

/** TlsRelayDeps are what the embedded relay reads: who is registered, and who may talk to whom. */
export interface TlsRelayDeps {
  nodeByMachineKey: (machineKey: string) => Node | undefined
  getNode: (id: string) => Node | undefined
  /** the mesh: membership and peer visibility, the same the map sends */
  peers: PeerReader
  /** node record changes, to cut a node that was removed, expired or re-keyed */
  events: MapNodeEvents
  registry?: Registry
  log?: MapLogger
}

/** EMBEDDED_UPGRADE_PATHS are the other upgrade paths of the controller's HTTPS server. */
const EMBEDDED_UPGRADE_PATHS = [MAP_PATH, RELAY_LINK_PATH]

/**
 * controllerMembers reads the relay's members straight from the controller: its node
 * registry, and the map's mesh for membership and peers.
 */
export function controllerMembers (deps: Pick<TlsRelayDeps, 'nodeByMachineKey' | 'getNode' | 'peers'>): TlsRelayMembers {
  return {
    byMachineKey: k => deps.nodeByMachineKey(k),
    node: id => deps.getNode(id),
    isMember (id) {
      const n = deps.getNode(id)
      return n !== undefined && mayConnect(n) && deps.peers.isMember(id)
    },
    peersOf: id => deps.peers.peersOf(id)
  }
}

/**
 * createTlsRelay is the TLS relay the controller embeds (@warren/relay's engine on the
 * controller's HTTPS port), judging nodes and pairs with the controller's own registry
 * and mesh, and cutting a node the moment its record says it may no longer relay.
 */
export function createTlsRelay (deps: TlsRelayDeps, opts: TlsRelayOptions = {}): TlsRelay {
  // The gauge reads the relay's links when scraped, after the relay exists.
  const metrics = deps.registry === undefined ? undefined : createRelayMetrics(deps.registry, () => relay.stats().links)
  const relay = createTlsRelayEngine({
    members: controllerMembers(deps),
    ...(metrics !== undefined ? { onDropped: reason => metrics.dropped.labels(reason).inc() } : {}),
    ...(deps.log !== undefined ? { log: deps.log } : {})
  }, opts)
  const onNode = (n: Node): void => { relay.meshChanged([n.id]) }
  deps.events.on('node-upserted', onNode)
  deps.events.on('node-removed', onNode)
  return {
    ...relay,
    attach: server => relay.attach(server, EMBEDDED_UPGRADE_PATHS),
    async close () {
      deps.events.off('node-upserted', onNode)
      deps.events.off('node-removed', onNode)
      await relay.close()
    }
  }
}

function createRelayMetrics (registry: Registry, links: () => number): { dropped: Counter<'reason'> } {
  const existing = registry.getSingleMetric('warren_tls_relay_dropped_frames_total') as Counter<'reason'> | undefined
  if (existing !== undefined) return { dropped: existing }
  // eslint-disable-next-line no-new
  new Gauge({ name: 'warren_tls_relay_links', help: 'Nodes connected to the TLS relay', registers: [registry], collect () { this.set(links()) } })
  return { dropped: new Counter({ name: 'warren_tls_relay_dropped_frames_total', help: 'Relayed frames dropped, by reason', labelNames: ['reason'], registers: [registry] }) }
}
