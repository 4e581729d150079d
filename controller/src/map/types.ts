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
 * MapPolicy is what map sessions need from the policy engine. The map service owns the
 * engine's node set: it feeds it only nodes that belong in the mesh (active, not
 * expired), so pending and expired nodes never appear as anyone's peer.
 * peersOf must be symmetric (A sees B exactly when B sees A).
 */
export interface MapPolicy {
  setNodes: (nodes: Node[]) => unknown
  /** upsertNode returns the ids of nodes whose peers or filter may have changed. */
  upsertNode: (node: Node) => Set<string>
  /** removeNode returns the ids of nodes whose peers or filter may have changed. */
  removeNode: (id: string) => Set<string>
  peersOf: (id: string) => ReadonlySet<string>
  filterFor: (id: string) => FilterRule[]
}

/** MapLogger is the slice of a pino logger the map service writes to. */
export interface MapLogger {
  info: (obj: object, msg?: string) => void
  warn: (obj: object, msg?: string) => void
  error: (obj: object, msg?: string) => void
  debug: (obj: object, msg?: string) => void
}
