import { WarrenError, isKeyExpired, type Node } from '@warren/protocol'
import type { NodeRecord, StoreOp } from '../store.js'
import type { CommitCore, Deferred } from './commit-core.js'
import { createPendingWrites } from './pending-writes.js'

/**
 * NodeTable holds the nodes' indexes (by name, machine key, WireGuard key) and runtime
 * facts (online, endpoints, unwritten lastSeen), and turns records into the API's Node
 * view. `save` and `remove` are the only ways a node changes, so the indexes and the
 * node-upserted / node-removed events always follow the store.
 */
export interface NodeTable {
  view: (n: NodeRecord) => Node
  isExpired: (n: NodeRecord) => boolean
  /** find looks a node up by id first, then by name, so an id always means that node */
  find: (idOrName: string) => NodeRecord | undefined
  /** require is find, or a 404 */
  require: (idOrName: string) => NodeRecord
  byMachineKey: (machineKey: string) => NodeRecord | undefined
  /** wgKeyHolder is the id of the node using a WireGuard key, if any */
  wgKeyHolder: (wgKey: string) => string | undefined
  /** nameHolder is the id of the node with a name, if any */
  nameHolder: (name: string) => string | undefined
  /** save commits a node change with `extra` ops (its audit entry); done() emits node-upserted */
  save: (next: NodeRecord, extra: StoreOp[]) => Deferred<Node>
  /** remove commits a node's deletion with `extra` ops; done() emits node-removed */
  remove: (n: NodeRecord, extra: StoreOp[]) => Deferred<Node>
  /** changeRuntime applies a runtime change and emits node-upserted when `change` says it changed something */
  changeRuntime: (id: string, change: (rec: NodeRecord) => boolean) => void
  setOnline: (id: string, online: boolean) => boolean
  setEndpoints: (id: string, endpoints: string[]) => boolean
  /** touch notes a new lastSeen, written by the next flush */
  touch: (rec: NodeRecord) => void
  /** sweepExpired emits node-upserted for nodes whose key expired since the last sweep */
  sweepExpired: () => void
  /** takeLastSeenOps gives the puts for lastSeen times not yet written, and forgets them */
  takeLastSeenOps: () => StoreOp[]
}

export function createNodeTable (core: CommitCore, domain: string): NodeTable {
  const { store } = core
  const indexes = createNodeIndexes()
  // Runtime facts, not persisted: a restarted controller learns them again from map sessions.
  const online = new Set<string>()
  const endpoints = new Map<string, string[]>()
  const unwritten = createPendingWrites(store.nodes, value => ({ type: 'put', table: 'node', value }))
  // Nodes whose key had expired at the last sweep, so the sweep reports each once.
  const seenExpired = new Set<string>()
  const isExpired = (n: NodeRecord): boolean => isKeyExpired(n.keyExpiry, core.now())

  for (const n of store.nodes.values()) {
    indexes.add(n)
    if (isExpired(n)) seenExpired.add(n.id)
  }

  const view = (n: NodeRecord): Node => nodeView(n, domain, isExpired(n), online.has(n.id), endpoints.get(n.id) ?? [])

  const find = (idOrName: string): NodeRecord | undefined => store.nodes.get(idOrName) ?? store.nodes.get(indexes.byName.get(idOrName) ?? '')
  const touch = (rec: NodeRecord): void => {
    rec.lastSeen = core.iso()
    unwritten.mark(rec.id)
  }

  return {
    view,
    isExpired,
    find,
    require (idOrName) {
      const n = find(idOrName)
      if (n === undefined) {
        throw new WarrenError('node_not_found', `no node with id or name '${idOrName}'; 'warren admin nodes list' shows them`, { status: 404 })
      }
      return n
    },
    byMachineKey (machineKey) {
      const id = indexes.byMachineKey.get(machineKey)
      return id === undefined ? undefined : store.nodes.get(id)
    },
    wgKeyHolder: wgKey => indexes.byWgKey.get(wgKey),
    nameHolder: name => indexes.byName.get(name),
    save (next, extra) {
      const prevRecord = store.nodes.get(next.id)
      const previous = prevRecord === undefined ? undefined : view(prevRecord)
      const durable = store.commit([{ type: 'put', table: 'node', value: next }, ...extra])
      if (prevRecord !== undefined) indexes.remove(prevRecord)
      indexes.add(next)
      unwritten.forget(next.id)
      if (isExpired(next)) seenExpired.add(next.id)
      else seenExpired.delete(next.id)
      return {
        durable,
        done: () => {
          const node = view(next)
          core.emit('node-upserted', node, previous)
          return node
        }
      }
    },
    remove (n, extra) {
      const node = view(n)
      const durable = store.commit([{ type: 'del', table: 'node', id: n.id }, ...extra])
      indexes.remove(n)
      online.delete(n.id)
      endpoints.delete(n.id)
      unwritten.forget(n.id)
      seenExpired.delete(n.id)
      return { durable, done: () => { core.emit('node-removed', node); return node } }
    },
    changeRuntime (id, change) {
      const rec = store.nodes.get(id)
      if (rec === undefined) return
      const previous = view(rec)
      if (change(rec)) core.emit('node-upserted', view(rec), previous)
    },
    setOnline (id, isOnline) {
      if (online.has(id) === isOnline) return false
      if (isOnline) online.add(id)
      else online.delete(id)
      return true
    },
    setEndpoints (id, eps) {
      const before = endpoints.get(id) ?? []
      if (before.length === eps.length && before.every((e, i) => e === eps[i])) return false
      endpoints.set(id, [...eps])
      return true
    },
    touch,
    sweepExpired () {
      for (const n of store.nodes.values()) {
        if (!seenExpired.has(n.id) && isExpired(n)) {
          seenExpired.add(n.id)
          const node = view(n)
          core.emit('node-upserted', node, { ...node, status: n.approved ? 'active' : 'pending' })
        }
      }
    },
    takeLastSeenOps: unwritten.take
  }
}

/** nodeView is the API's view of a node record with its derived and runtime fields. */
function nodeView (n: NodeRecord, domain: string, expired: boolean, online: boolean, endpoints: readonly string[]): Node {
  const out: Node = {
    id: n.id,
    name: n.name,
    fqdn: `${n.name}.${domain}`,
    tags: [...n.tags],
    machineKey: n.machineKey,
    wgKey: n.wgKey,
    ipv4: n.ipv4,
    ipv6: n.ipv6,
    status: expired ? 'expired' : n.approved ? 'active' : 'pending',
    ephemeral: n.ephemeral,
    online,
    created: n.created,
    endpoints: [...endpoints]
  }
  if (n.user !== undefined) out.user = n.user
  if (n.lastSeen !== undefined) out.lastSeen = n.lastSeen
  if (n.keyExpiry !== undefined) out.keyExpiry = n.keyExpiry
  if (n.advertisedRoutes !== undefined) out.advertisedRoutes = [...n.advertisedRoutes]
  if (n.approvedRoutes !== undefined) out.approvedRoutes = [...n.approvedRoutes]
  if (n.postureAttrs !== undefined) out.postureAttrs = { ...n.postureAttrs }
  return out
}

/** createNodeIndexes keeps the maps from name, machine key and WireGuard key to node id. */
function createNodeIndexes (): { byName: Map<string, string>, byMachineKey: Map<string, string>, byWgKey: Map<string, string>, add: (n: NodeRecord) => void, remove: (n: NodeRecord) => void } {
  const byName = new Map<string, string>()
  const byMachineKey = new Map<string, string>()
  const byWgKey = new Map<string, string>()
  return {
    byName,
    byMachineKey,
    byWgKey,
    add (n) {
      byName.set(n.name, n.id)
      byMachineKey.set(n.machineKey, n.id)
      byWgKey.set(n.wgKey, n.id)
    },
    remove (n) {
      byName.delete(n.name)
      byMachineKey.delete(n.machineKey)
      byWgKey.delete(n.wgKey)
    }
  }
}
