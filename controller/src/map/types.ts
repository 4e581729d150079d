import type { Node, FilterRule, NodeAttrs, HostAttrs } from '@warren/protocol'
import type { Policy, PolicyUser } from '../policy/types.js'

/**
 * NodePresence is what the map service learns from a node's session: whether it is
 * connected, when it was last seen, and the UDP endpoints it reports. The map service
 * owns these facts; absent fields stay as they are.
 */
export interface NodePresence {
  online?: boolean
  endpoints?: string[]
  lastSeen?: string
}

/**
 * MapNodeSource is the part of the controller's node state that map sessions need. The
 * controller core implements it over its store; tests implement it in memory. Every
 * change to a node's record (registration, approval, renaming, tags, expiry) must be
 * announced with 'node-upserted' and every deletion with 'node-removed', because those
 * events are what turn into deltas. The map service's own facts go the other way only:
 * it sends them to peers itself and records them with recordPresence, which announces
 * nothing, so no write of the map service comes back to it as an event.
 */
export interface MapNodeSource {
  listNodes: () => Iterable<Node>
  getNode: (id: string) => Node | undefined
  nodeByMachineKey: (machineKey: string) => Node | undefined
  events: MapNodeEvents
  /** recordPresence stores what the map service knows of a node's session, without an event */
  recordPresence: (id: string, presence: NodePresence) => unknown
  /** advertiseRoutes records the subnet routes a node's hello advertises (announced as a node change) */
  advertiseRoutes?: (id: string, routes: string[]) => unknown
  /** reportHostAttrs records the posture attributes a node's hello reports (announced as a node change when they differ) */
  reportHostAttrs?: (id: string, attrs: HostAttrs) => unknown
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
 * MapPolicy is the policy engine as the map needs it (controller/src/policy's
 * PolicyEngine fits as it is). Only MeshPolicy writes to it: it feeds it only nodes that
 * belong in the mesh (active, not expired), so pending and expired nodes never appear
 * as anyone's peer. Peers are symmetric (A sees B exactly when B sees A), so one node's
 * change can only add or drop pairs that include it.
 */
export interface MapPolicy {
  setNodes: (nodes: Node[]) => unknown
  upsertNode: (node: Node) => MapPolicyChange
  removeNode: (id: string) => MapPolicyChange
  peersOf: (id: string) => ReadonlySet<string>
  /** filterFor should return the same array while the filter is unchanged (checked by reference first) */
  filterFor: (id: string) => FilterRule[]
  /** setPolicy swaps policy and users and returns the ids whose peers or filter changed (test engines may lack it) */
  setPolicy?: (policy: Policy, users: readonly PolicyUser[]) => Set<string>
  /** attrsFor is the node's own nodeAttrs (test engines may lack it: none) */
  attrsFor?: (id: string) => NodeAttrs
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
