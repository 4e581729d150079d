import { EventEmitter } from 'node:events'
import type { Node, FilterRule } from '@warren/protocol'
import type { MapNodeSource, MapPolicy, MapPolicyChange } from './types.js'

/**
 * MemoryNodeSource is a MapNodeSource held in memory, for tests and benchmarks of the
 * map service without a store. `put` and `remove` stand in for the controller's own
 * changes (registration, approval, deletion); like the controller's state,
 * recordPresence stores the map service's facts without an event.
 */
export interface MemoryNodeSource extends MapNodeSource {
  events: EventEmitter
  put: (node: Node) => Node
  patch: (id: string, change: Partial<Node>) => Node
  remove: (id: string) => void
  listNodes: () => Node[]
}

export function createMemoryNodeSource (initial: Node[] = []): MemoryNodeSource {
  const nodes = new Map<string, Node>(initial.map(n => [n.id, n]))
  const events = new EventEmitter()
  events.setMaxListeners(0)
  const src: MemoryNodeSource = {
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

/**
 * createTagGroupPolicy is a small MapPolicy for tests and benchmarks: nodes that share
 * a tag see each other, and nodes tagged `everyone` (for example `tag:server`) see and
 * are seen by all. With no tags anywhere and `everyone` unset, it is allow-all. Each
 * node's filter admits its peers' addresses on every protocol and port; answers are
 * cached per node and updated only for the nodes a change touches.
 */
export function createTagGroupPolicy (opts: { everyone?: string } = {}): MapPolicy {
  const nodes = new Map<string, Node>()
  const byTag = new Map<string, Set<string>>()
  const untagged = new Set<string>()
  const shared = new Set<string>()
  const peerCache = new Map<string, Set<string>>()
  const filterCache = new Map<string, FilterRule[]>()

  const groupsOf = (n: Node): string[] => n.tags.filter(t => t !== opts.everyone)
  const isShared = (n: Node): boolean => opts.everyone !== undefined && n.tags.includes(opts.everyone)

  function index (n: Node, add: boolean): void {
    if (isShared(n)) {
      if (add) shared.add(n.id)
      else shared.delete(n.id)
    }
    const groups = groupsOf(n)
    if (groups.length === 0 && !isShared(n)) {
      if (add) untagged.add(n.id)
      else untagged.delete(n.id)
    }
    for (const t of groups) {
      let set = byTag.get(t)
      if (set === undefined) byTag.set(t, set = new Set())
      if (add) set.add(n.id)
      else set.delete(n.id)
    }
  }

  function compute (id: string): Set<string> {
    const n = nodes.get(id)
    const out = new Set<string>()
    if (n === undefined) return out
    if (isShared(n)) {
      for (const other of nodes.keys()) out.add(other)
    } else {
      for (const s of shared) out.add(s)
      const groups = groupsOf(n)
      if (groups.length === 0) for (const u of untagged) out.add(u)
      for (const t of groups) for (const m of byTag.get(t) ?? []) out.add(m)
    }
    out.delete(id)
    return out
  }

  function peersOf (id: string): Set<string> {
    let p = peerCache.get(id)
    if (p === undefined) peerCache.set(id, p = compute(id))
    return p
  }

  /** link adds or drops one node in its peers' cached answers, so a change costs its peer count. */
  function link (id: string, add: boolean): Set<string> {
    const touched = new Set(peersOf(id))
    for (const p of touched) {
      const cached = peerCache.get(p)
      if (add) cached?.add(id)
      else cached?.delete(id)
      filterCache.delete(p)
    }
    filterCache.delete(id)
    return touched
  }

  function unlink (id: string): Set<string> {
    const old = nodes.get(id)
    if (old === undefined) return new Set()
    const before = link(id, false)
    index(old, false)
    nodes.delete(id)
    peerCache.delete(id)
    return before
  }

  function change (id: string, before: Set<string>, after: Set<string>): MapPolicyChange {
    const gained = new Set([...after].filter(x => !before.has(x)))
    const lost = new Set([...before].filter(x => !after.has(x)))
    const filterChanged = new Set([...before, ...after])
    if (gained.size > 0 || lost.size > 0) filterChanged.add(id)
    return Object.assign(new Set([...filterChanged]), { peersGained: gained, peersLost: lost, filterChanged })
  }

  const sameIdentity = (a: Node, b: Node): boolean => a.ipv4 === b.ipv4 && a.ipv6 === b.ipv6 && a.tags.join() === b.tags.join()

  return {
    setNodes (list) {
      nodes.clear(); byTag.clear(); untagged.clear(); shared.clear(); peerCache.clear(); filterCache.clear()
      for (const n of list) {
        nodes.set(n.id, n)
        index(n, true)
      }
    },
    upsertNode (n) {
      const old = nodes.get(n.id)
      if (old !== undefined && sameIdentity(old, n)) {
        nodes.set(n.id, n)
        return change(n.id, new Set(), new Set())
      }
      const before = unlink(n.id)
      nodes.set(n.id, n)
      index(n, true)
      return change(n.id, before, link(n.id, true))
    },
    removeNode: id => change(id, unlink(id), new Set()),
    peersOf,
    filterFor (id) {
      let f = filterCache.get(id)
      if (f === undefined) {
        const srcs: string[] = []
        for (const p of peersOf(id)) {
          const n = nodes.get(p)!
          srcs.push(`${n.ipv4}/32`, `${n.ipv6}/128`)
        }
        f = srcs.length === 0 ? [] : [{ srcs, protos: [], ports: [{ first: 0, last: 65535 }] }]
        filterCache.set(id, f)
      }
      return f
    }
  }
}
