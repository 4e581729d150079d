import type { Node, FilterRule } from '@warren/protocol'

/**
 * MapNodeSource is the part of the controller's node state that map sessions need. The
 * controller core implements it over its store; tests implement it in memory. Every
 * change to a node must be announced with 'node-upserted' (also after the map service's
 * own writes, such as setOnline) and every deletion with 'node-removed', because those
 * events are what turn into deltas.
 */
export interface MapNodeSource {
  listNodes: () => Iterable<Node>
  getNode: (id: string) => Node | undefined
  nodeByMachineKey: (machineKey: string) => Node | undefined
  events: MapNodeEvents
  /** setOnline records that a node's map session opened or closed, with lastSeen = now. */
  setOnline: (id: string, online: boolean) => unknown
  /** setEndpoints records the UDP endpoints a node reported (already validated). */
  setEndpoints: (id: string, endpoints: string[]) => unknown
  /** deleteNode removes a node for good (used for ephemeral nodes that went away). */
  deleteNode: (id: string, actor: string) => unknown
}

/** MapNodeEvents is the event emitter slice of MapNodeSource (a node:events EventEmitter fits). */
export interface MapNodeEvents {
  on: ((event: 'node-upserted', listener: (node: Node) => void) => unknown) &
  ((event: 'node-removed', listener: (node: Node) => void) => unknown)
  off: ((event: 'node-upserted', listener: (node: Node) => void) => unknown) &
  ((event: 'node-removed', listener: (node: Node) => void) => unknown)
}

/**
 * MapPolicy is what map sessions need from the policy engine (controller/src/policy's
 * PolicyEngine fits as it is). The map service owns the engine's node set: it feeds it
 * only nodes that belong in the mesh (active, not expired), so pending and expired
 * nodes never appear as anyone's peer. Peers are symmetric (A sees B exactly when B
 * sees A), so one node's change can only add or drop pairs that include it.
 */
export interface MapPolicy {
  setNodes: (nodes: Node[]) => unknown
  upsertNode: (node: Node) => MapPolicyChange
  removeNode: (id: string) => MapPolicyChange
  peersOf: (id: string) => ReadonlySet<string>
  /** filterFor should return the same array while the filter is unchanged (checked by reference first) */
  filterFor: (id: string) => FilterRule[]
}

/**
 * MapPolicyChange is the engine's answer to one node change: every id whose peers or
 * filter changed, and in detail who gained or lost the changed node as a peer and
 * whose filter changed.
 */
export interface MapPolicyChange extends ReadonlySet<string> {
  peersGained: ReadonlySet<string>
  peersLost: ReadonlySet<string>
  filterChanged: ReadonlySet<string>
}

/** MapLogger is the slice of a pino logger the map service writes to. */
export interface MapLogger {
  info: (obj: object, msg?: string) => void
  warn: (obj: object, msg?: string) => void
  error: (obj: object, msg?: string) => void
  debug: (obj: object, msg?: string) => void
}
