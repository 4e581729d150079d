import { WarrenError, checkNodeName, type Node } from '@warren/protocol'
import type { NodeRecord } from '../store.js'
import type { CommitCore } from './commit-core.js'
import type { NodeTable } from './node-table.js'
import type { Users } from './users.js'

/** Nodes is what admins and the map server do to registered nodes (registration is in registration.ts). */
export interface NodeMethods {
  listNodes: () => Node[]
  /** getNode finds a node by id, or else by name (names never read as ids) */
  getNode: (idOrName: string) => Node | undefined
  nodeByMachineKey: (machineKey: string) => Node | undefined
  nodeRecord: (id: string) => Readonly<NodeRecord> | undefined
  setOnline: (id: string, online: boolean) => void
  touchLastSeen: (id: string) => void
  setEndpoints: (id: string, endpoints: string[]) => void
  /**
   * recordPresence stores the map service's facts about a node's session. Unlike
   * setOnline/setEndpoints it emits nothing: the map service has told the peers already,
   * so it must not hear its own write come back.
   */
  recordPresence: (id: string, presence: { online?: boolean, endpoints?: string[], lastSeen?: string }) => void
  approveNode: (idOrName: string, actor: string) => Promise<Node>
  renameNode: (idOrName: string, name: string, actor: string) => Promise<Node>
  expireNode: (idOrName: string, actor: string) => Promise<Node>
  setTags: (idOrName: string, tags: string[], actor: string) => Promise<Node>
  deleteNode: (idOrName: string, actor: string) => Promise<Node>
  /** sweepExpired emits node-upserted for nodes whose key expired since the last sweep */
  sweepExpired: () => void
}

export function createNodes (core: CommitCore, table: NodeTable, users: Users): NodeMethods {
  const { store, locked, auditOp } = core
  return {
    listNodes: () => [...store.nodes.values()].map(table.view),
    getNode (idOrName) {
      const n = table.find(idOrName)
      return n === undefined ? undefined : table.view(n)
    },
    nodeByMachineKey (machineKey) {
      const n = table.byMachineKey(machineKey)
      return n === undefined ? undefined : table.view(n)
    },
    nodeRecord: id => store.nodes.get(id),
    setOnline (id, isOnline) {
      table.changeRuntime(id, rec => {
        table.touch(rec)
        return table.setOnline(id, isOnline)
      })
    },
    touchLastSeen (id) {
      const rec = store.nodes.get(id)
      if (rec !== undefined) table.touch(rec)
    },
    setEndpoints (id, eps) {
      table.changeRuntime(id, () => table.setEndpoints(id, eps))
    },
    recordPresence (id, presence) {
      const rec = store.nodes.get(id)
      if (rec === undefined) return
      if (presence.online !== undefined) table.setOnline(id, presence.online)
      if (presence.endpoints !== undefined) table.setEndpoints(id, presence.endpoints)
      if (presence.lastSeen !== undefined) table.touch(rec)
    },
    approveNode: locked((idOrName: string, actor: string) => {
      const n = table.require(idOrName)
      if (n.approved) return core.unchanged(table.view(n))
      return table.save({ ...n, approved: true }, [auditOp(actor, 'node.approve', n.name, { node: n.id })])
    }),
    renameNode: locked((idOrName: string, name: string, actor: string) => {
      checkNodeName(name)
      const n = table.require(idOrName)
      if (n.name === name) return core.unchanged(table.view(n))
      const holder = table.nameHolder(name)
      if (holder !== undefined) {
        throw new WarrenError('name_taken', `another node (${holder}) is already named '${name}'; pick another name or rename that node first`, { status: 409, field: 'name' })
      }
      return table.save({ ...n, name }, [auditOp(actor, 'node.rename', name, { node: n.id, from: n.name })])
    }),
    expireNode: locked((idOrName: string, actor: string) => {
      const n = table.require(idOrName)
      if (table.isExpired(n)) return core.unchanged(table.view(n))
      return table.save({ ...n, keyExpiry: core.iso() }, [auditOp(actor, 'node.expire', n.name, { node: n.id })])
    }),
    setTags: locked((idOrName: string, tagList: string[], actor: string) => {
      const n = table.require(idOrName)
      const tags = [...new Set(tagList)].sort()
      const next: NodeRecord = { ...n, tags }
      if (tags.length > 0) {
        delete next.user
      } else if (n.user === undefined) {
        if (n.createdBy === undefined || !users.userExists(n.createdBy)) {
          throw new WarrenError('needs_owner', `node '${n.name}' has no user to own it once its tags are removed; keep at least one tag`, { status: 400, field: 'tags' })
        }
        next.user = n.createdBy
      }
      return table.save(next, [auditOp(actor, 'node.tags', n.name, { node: n.id, tags, before: n.tags })])
    }),
    deleteNode: locked((idOrName: string, actor: string) => {
      const n = table.require(idOrName)
      return table.remove(n, [auditOp(actor, 'node.delete', n.name, { node: n.id, ipv4: n.ipv4 })])
    }),
    sweepExpired: table.sweepExpired
  }
}
