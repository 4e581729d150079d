import { EventEmitter } from 'node:events'
import type { Node } from '@warren/protocol'
import type { MapNodeSource } from './types.js'

/**
 * FakeNodeSource is a MapNodeSource held in memory, for tests and benchmarks of the
 * map service without a store. `put` and `remove` stand in for the controller's own
 * changes (registration, approval, deletion); like the controller's state,
 * recordPresence stores the map service's facts without an event.
 */
export interface FakeNodeSource extends MapNodeSource {
  events: EventEmitter
  put: (node: Node) => Node
  patch: (id: string, change: Partial<Node>) => Node
  remove: (id: string) => void
  listNodes: () => Node[]
}

/** createFakeNodeSource returns a FakeNodeSource holding `initial`. */
export function createFakeNodeSource (initial: Node[] = []): FakeNodeSource {
  const nodes = new Map<string, Node>(initial.map(n => [n.id, n]))
  const events = new EventEmitter()
  events.setMaxListeners(0)
  const src: FakeNodeSource = {
    events,
    listNodes: () => [...nodes.values()],
    getNode: id => nodes.get(id),
    nodeByMachineKey: key => [...nodes.values()].find(n => n.machineKey === key),
    put (node) {
      nodes.set(node.id, node)
      events.emit('node-upserted', node)
      return node
    },
    patch (id, change) {
      const cur = nodes.get(id)
      if (cur === undefined) throw new Error(`no node ${id}`)
      return src.put({ ...cur, ...change })
    },
    remove (id) {
      const cur = nodes.get(id)
      if (cur === undefined) return
      nodes.delete(id)
      events.emit('node-removed', cur)
    },
    recordPresence (id, presence) {
      const cur = nodes.get(id)
      if (cur !== undefined) nodes.set(id, { ...cur, ...presence })
    },
    deleteNode (id) {
      src.remove(id)
    }
  }
  return src
}
