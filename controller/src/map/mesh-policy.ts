import { isKeyExpired, type Node, type FilterRule, type NodeAttrs } from '@warren/protocol'
import type { Policy, PolicyUser } from '../policy/types.js'
import type { MapNodeSource, MapPolicy, MapPolicyChange } from './types.js'

/**
 * NodeChangeReport is one node change after the engine took it: whether the node is a
 * member of the mesh now and was before, what the engine said the change did to other
 * nodes, and when the change began (for the change-time metric).
 */
export interface NodeChangeReport {
  node: Node
  member: boolean
  wasMember: boolean
  policy: MapPolicyChange
  started: bigint
}

/** MeshListener hears every change MeshPolicy made, after the engine has it. */
export interface MeshListener {
  /** nodeChanged: a node was created, its record changed, or its key expired */
  nodeChanged: (report: NodeChangeReport) => void
  nodeRemoved: (report: NodeChangeReport) => void
  /** policyChanged: the peers or filters of these ids (of every node when absent) may have changed */
  policyChanged: (ids?: Iterable<string>) => void
}

/** PeerReader is the read side of the mesh: what the map fan-out asks, never changes. */
export interface PeerReader {
  /** isMember: active and its key not expired, so known to the engine and visible to peers */
  isMember: (id: string) => boolean
  /** peersOf is empty for a node that is not a member */
  peersOf: (id: string) => ReadonlySet<string>
  /** filterFor is empty for a node that is not a member; the same array while unchanged */
  filterFor: (id: string) => FilterRule[]
  /** attrsFor is the node's own nodeAttrs; none for a node that is not a member */
  attrsFor?: (id: string) => NodeAttrs
}

/**
 * MeshPolicy is the one writer of the policy engine. It follows the node source's
 * record changes and feeds the engine only the nodes that belong in the mesh (active,
 * key not expired: pending and expired nodes are nobody's peer), swaps the policy and
 * users, and tells its listener what each change did. Everything else only reads.
 */
export interface MeshPolicy extends PeerReader {
  /** setPolicy compiles a new policy (or the same one for changed users) into the engine */
  setPolicy: (policy: Policy, users: readonly PolicyUser[]) => void
  /** setEngine replaces the engine whole (tests and benchmarks bring their own) and gives it the members */
  setEngine: (engine: MapPolicy) => void
  /** close stops following the source and its expiry timers */
  close: () => void
}

export interface MeshPolicyOptions {
  source: MapNodeSource
  engine: MapPolicy
  listener: MeshListener
}

interface Tracked {
  node: Node
  member: boolean
  expiryTimer?: NodeJS.Timeout
}

const EMPTY_PEERS: ReadonlySet<string> = new Set()
const NO_FILTER: FilterRule[] = []
const NO_ATTRS: NodeAttrs = Object.freeze({})
const MAX_TIMER_MS = 2 ** 31 - 1

/** NO_POLICY_CHANGE is the engine's answer to a change that concerns no other node. */
export const NO_POLICY_CHANGE: MapPolicyChange = Object.assign(new Set<string>(), {
  peersGained: new Set<string>(), peersLost: new Set<string>(), filterChanged: new Set<string>()
})

function isMemberNode (n: Node): boolean {
  return n.status === 'active' && !isKeyExpired(n.keyExpiry)
}

export function createMeshPolicy (opts: MeshPolicyOptions): MeshPolicy {
  const { source, listener } = opts
  let engine = opts.engine
  const nodes = new Map<string, Tracked>()
  let closed = false

  /** armExpiry re-reads the node when its key expires, so it leaves the mesh then, not at the next sweep. */
  function armExpiry (t: Tracked): void {
    clearTimeout(t.expiryTimer)
    t.expiryTimer = undefined
    const n = t.node
    if (n.keyExpiry === undefined || n.status === 'expired') return
    const left = Date.parse(n.keyExpiry) - Date.now()
    if (left <= 0) return
    t.expiryTimer = setTimeout(() => {
      t.expiryTimer = undefined
      const current = source.getNode(n.id)
      if (nodes.get(n.id) === t && current !== undefined) upsert(current)
    }, Math.min(left + 5, MAX_TIMER_MS))
    t.expiryTimer.unref()
  }

  function upsert (n: Node): void {
    if (closed) return
    const started = process.hrtime.bigint()
    const prev = nodes.get(n.id)
    const wasMember = prev?.member ?? false
    const t: Tracked = prev ?? { node: n, member: false }
    t.node = n
    t.member = isMemberNode(n)
    nodes.set(n.id, t)
    armExpiry(t)
    let policy = NO_POLICY_CHANGE
    if (t.member) policy = engine.upsertNode(n)
    else if (wasMember) policy = engine.removeNode(n.id)
    listener.nodeChanged({ node: n, member: t.member, wasMember, policy, started })
  }

  function remove (n: Node): void {
    if (closed) return
    const started = process.hrtime.bigint()
    const t = nodes.get(n.id)
    if (t === undefined) return
    clearTimeout(t.expiryTimer)
    nodes.delete(n.id)
    const policy = t.member ? engine.removeNode(n.id) : NO_POLICY_CHANGE
    listener.nodeRemoved({ node: n, member: false, wasMember: t.member, policy, started })
  }

  const members = (): Node[] => [...nodes.values()].filter(t => t.member).map(t => t.node)
  const isMember = (id: string): boolean => nodes.get(id)?.member === true

  for (const n of source.listNodes()) {
    const t: Tracked = { node: n, member: isMemberNode(n) }
    nodes.set(n.id, t)
    armExpiry(t)
  }
  engine.setNodes(members())
  source.events.on('node-upserted', upsert)
  source.events.on('node-removed', remove)

  return {
    isMember,
    peersOf: id => isMember(id) ? engine.peersOf(id) : EMPTY_PEERS,
    filterFor: id => isMember(id) ? engine.filterFor(id) : NO_FILTER,
    attrsFor: id => isMember(id) ? engine.attrsFor?.(id) ?? NO_ATTRS : NO_ATTRS,
    setPolicy (policy, users) {
      if (engine.setPolicy === undefined) throw new Error('this policy engine takes no policy; replace it with setEngine')
      listener.policyChanged(engine.setPolicy(policy, users))
    },
    setEngine (next) {
      engine = next
      engine.setNodes(members())
      listener.policyChanged()
    },
    close () {
      if (closed) return
      closed = true
      source.events.off('node-upserted', upsert)
      source.events.off('node-removed', remove)
      for (const t of nodes.values()) clearTimeout(t.expiryTimer)
    }
  }
}
