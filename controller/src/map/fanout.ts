import { servedRoutes, type Node, type Peer, type FilterRule, type NatConfig } from '@warren/protocol'
import type { MapPolicyChange } from './types.js'
import type { PeerReader } from './mesh-policy.js'
import { createDeltaQueues, type FanoutSession, type QueuedSession } from './delta-queues.js'
import { createPrimaryRoutes } from './primary-routes.js'

export type { FanoutSession } from './delta-queues.js'

interface NodeEntry {
  node: Node
  peerJson: string
  selfJson: string
}

/** MembershipChange is a node change as the mesh policy reports it (see NodeChangeReport). */
export interface MembershipChange {
  member: boolean
  wasMember: boolean
  policy: MapPolicyChange
}

/**
 * MapFanout turns node and policy changes into the deltas each session should get:
 * coalesced per session (changes merge until the session's next message), numbered,
 * and only for the sessions a change affects. It holds no sockets and no timers: the
 * map service attaches sockets, and sends what `delta` returns for each `dirty` session.
 */
export interface MapFanout {
  /** loadNodes adds the nodes known before any session opened (at startup) */
  loadNodes: (nodes: Iterable<Node>) => void
  /** nodeChanged queues a node's new view for its peers and itself; returns the sessions touched */
  nodeChanged: (node: Node, change: MembershipChange) => number
  /** nodeRemoved queues the removal for the node's peers; returns the sessions touched */
  nodeRemoved: (node: Node, policy: MapPolicyChange) => number
  /** policyChanged re-reads peers and filters of these ids (of every session when absent) */
  policyChanged: (ids?: Iterable<string>) => void
  setDomain: (domain: string) => void
  /** setNat changes the STUN servers and relays every node is told (undefined: none) */
  setNat: (nat: NatConfig | undefined) => void
  node: (id: string) => Node | undefined
  nodeCount: () => number
  /** primaryRoutes lists the routes a node is the primary router for */
  primaryRoutes: (id: string) => string[]

  session: (nodeId: string) => FanoutSession | undefined
  sessions: () => Iterable<FanoutSession>
  sessionCount: () => number
  /**
   * openSession resumes the node's session when `resume` names it at its current seq,
   * and otherwise starts a new one (dropping the old one's queue).
   */
  openSession: (nodeId: string, resume?: { session: string, seq: number }) => { session: FanoutSession, resumed: boolean }
  /** setConnected marks whether a socket is attached; only connected sessions become dirty */
  setConnected: (s: FanoutSession, connected: boolean) => void
  forgetSession: (s: FanoutSession) => void
  /** fullMap is a new session's first message (seq 1), in pieces (see Outbox.send) */
  fullMap: (s: FanoutSession) => string[]
  /** resumeDelta is a resumed session's first message: what changed while away, perhaps nothing */
  resumeDelta: (s: FanoutSession) => string[]
  /** delta takes a session's queued changes as its next message, or undefined when none are queued */
  delta: (s: FanoutSession) => string[] | undefined
  /** dirty lists connected sessions with queued changes; settle takes one off the list */
  dirty: () => Iterable<FanoutSession>
  settle: (s: FanoutSession) => void
}

export interface MapFanoutOptions {
  peers: PeerReader
  /** MagicDNS domain sent in every map */
  domain: string
  /** STUN servers and relays sent in every map */
  nat?: NatConfig
  /** onDirty is called when a connected session gets queued changes (to arm a flush) */
  onDirty?: () => void
}

/**
 * peerView is what other nodes see of a node: never its machine key, status or creation
 * time; with the routes it serves, those it is the primary router for.
 */
function peerView (n: Node, primaryRoutes: string[]): Peer {
  const p: Peer = {
    id: n.id,
    name: n.name,
    fqdn: n.fqdn,
    tags: n.tags,
    wgKey: n.wgKey,
    ipv4: n.ipv4,
    ipv6: n.ipv6,
    endpoints: n.endpoints,
    online: n.online
  }
  if (n.user !== undefined) p.user = n.user
  if (n.lastSeen !== undefined) p.lastSeen = n.lastSeen
  if (n.keyExpiry !== undefined) p.keyExpiry = n.keyExpiry
  const routes = servedRoutes(n)
  if (routes.length > 0) p.routes = routes
  if (primaryRoutes.length > 0) p.primaryRoutes = primaryRoutes
  return p
}

const dnsText = (domain: string): string => JSON.stringify({ domain, magicDns: true })

/**
 * createMapFanout keeps, per session, the peers and the filter it last queued, so a
 * node change becomes deltas for exactly the sessions the engine says it affects and
 * never a rebuild of all maps. Each node's peer view is serialized once and shared by
 * every recipient, and so is each distinct filter.
 */
export function createMapFanout (opts: MapFanoutOptions): MapFanout {
  const peers = opts.peers
  const entries = new Map<string, NodeEntry>()
  const primaries = createPrimaryRoutes()
  const queues = createDeltaQueues(id => entries.get(id)?.peerJson, opts.onDirty ?? (() => {}))
  const filterJsonCache = new WeakMap<FilterRule[], string>()
  let dnsJson = dnsText(opts.domain)
  let natJson = opts.nat === undefined ? '' : JSON.stringify(opts.nat)

  function entryFor (n: Node): NodeEntry {
    const e: NodeEntry = entries.get(n.id) ?? { node: n, peerJson: '', selfJson: '' }
    e.node = n
    const primary = primaries.primaryOf(n.id)
    e.peerJson = JSON.stringify(peerView(n, primary))
    e.selfJson = selfText(n, primary)
    entries.set(n.id, e)
    return e
  }

  /**
   * selfText is what a node is told of itself: its record, with its own nodeAttrs when it
   * has any, and for a router the served routes it is primary for (it stands by for the others).
   */
  function selfText (n: Node, primary: string[]): string {
    const attrs = peers.attrsFor?.(n.id)
    return JSON.stringify({
      ...n,
      ...(attrs === undefined || Object.keys(attrs).length === 0 ? {} : { attrs }),
      ...(primary.length > 0 ? { primaryRoutes: primary } : {})
    })
  }

  /** reconcilePeers compares a session's peers with the policy's answer in full. */
  function reconcilePeers (s: QueuedSession): void {
    const want = peers.peersOf(s.nodeId)
    for (const id of s.sentPeers) if (!want.has(id) || !entries.has(id)) queues.queueRemove(s, id)
    for (const id of want) if (!s.sentPeers.has(id) && entries.has(id)) queues.queueAdd(s, id)
  }

  /** filterJson serializes each distinct filter once: nodes that share a filter share its array. */
  function filterJson (ref: FilterRule[]): string {
    let json = filterJsonCache.get(ref)
    if (json === undefined) filterJsonCache.set(ref, json = JSON.stringify(ref))
    return json
  }

  function reconcileFilter (s: QueuedSession): void {
    const ref = peers.filterFor(s.nodeId)
    if (ref !== s.filterRef) queues.queueFilter(s, ref, filterJson(ref))
  }

  /** applyPolicyChange queues what the engine says one node's change did to other sessions. */
  function applyPolicyChange (changedId: string, change: MapPolicyChange, touched: Set<QueuedSession>): void {
    const visible = peers.isMember(changedId) && entries.has(changedId)
    for (const id of change.peersGained) {
      const s = queues.get(id)
      if (s === undefined || id === changedId || !visible) continue
      queues.queueAdd(s, changedId)
      touched.add(s)
    }
    for (const id of change.peersLost) {
      const s = queues.get(id)
      if (s === undefined || !s.sentPeers.has(changedId)) continue
      queues.queueRemove(s, changedId)
      touched.add(s)
    }
    for (const id of change.filterChanged) {
      const s = queues.get(id)
      if (s === undefined || id === changedId) continue
      reconcileFilter(s)
      touched.add(s)
    }
  }

  /**
   * nodeChanged turns one node change into queued deltas. The engine named the nodes
   * that gained or lost this node as a peer and those whose filter changed; the node's
   * current peers get its new view when that changed. Nothing else is looked at, so a
   * change costs what it affects, not the size of the network.
   */
  function nodeChanged (n: Node, change: MembershipChange): number {
    const oldPeerJson = entries.get(n.id)?.peerJson
    const movedPrimaries = primaries.update(n)
    const e = entryFor(n)
    const touched = new Set<QueuedSession>()
    applyPolicyChange(n.id, change.policy, touched)
    if (oldPeerJson !== e.peerJson && change.member) queueView(n.id, touched)
    requeuePrimaries(movedPrimaries, n.id, touched)
    const own = queues.get(n.id)
    if (own !== undefined) {
      touched.add(own)
      queues.queueSelf(own, e.selfJson)
      if (change.wasMember !== change.member || change.policy.peersGained.size > 0 || change.policy.peersLost.size > 0) reconcilePeers(own)
      reconcileFilter(own)
    }
    return touched.size
  }

  /** queueView queues a node's current view for the peers it was sent to. */
  function queueView (nodeId: string, touched: Set<QueuedSession>): void {
    for (const id of peers.peersOf(nodeId)) {
      const s = queues.get(id)
      if (s === undefined || !s.sentPeers.has(nodeId)) continue
      queues.queueAdd(s, nodeId)
      touched.add(s)
    }
  }

  /** requeuePrimaries sends the new views of other routers whose primary routes moved with a change. */
  function requeuePrimaries (ids: Iterable<string>, changedId: string | undefined, touched: Set<QueuedSession>): void {
    for (const id of ids) {
      const other = entries.get(id)
      if (id === changedId || other === undefined) continue
      const e = entryFor(other.node)
      if (peers.isMember(id)) queueView(id, touched)
      const own = queues.get(id)
      if (own !== undefined) {
        queues.queueSelf(own, e.selfJson)
        touched.add(own)
      }
    }
  }

  const queued = (s: FanoutSession): QueuedSession => s as QueuedSession

  return {
    loadNodes (nodes) {
      const list = [...nodes]
      for (const n of list) primaries.update(n)
      for (const n of list) entryFor(n)
    },
    nodeChanged,
    nodeRemoved (n, policy) {
      if (!entries.delete(n.id)) return 0
      const touched = new Set<QueuedSession>()
      applyPolicyChange(n.id, policy, touched)
      requeuePrimaries(primaries.remove(n.id), undefined, touched)
      return touched.size
    },
    policyChanged (ids) {
      const list = ids === undefined ? [...queues.all()] : [...ids].map(id => queues.get(id))
      for (const s of list) {
        if (s === undefined) continue
        reconcilePeers(s)
        reconcileFilter(s)
        // a policy change may change the node's own attributes: queueSelf sends only a changed self
        const e = entries.get(s.nodeId)
        if (e !== undefined) queues.queueSelf(s, entryFor(e.node).selfJson)
      }
    },
    setDomain (domain) {
      dnsJson = dnsText(domain)
      for (const s of queues.all()) queues.queueDns(s, dnsJson)
    },
    setNat (nat) {
      // A node keeps the last NAT config it was sent; "none" goes out as empty lists.
      natJson = nat === undefined ? (natJson === '' ? '' : JSON.stringify({ stun: [], relays: [] })) : JSON.stringify(nat)
      for (const s of queues.all()) queues.queueNat(s, natJson)
    },
    node: id => entries.get(id)?.node,
    nodeCount: () => entries.size,
    primaryRoutes: id => primaries.primaryOf(id),

    session: nodeId => queues.get(nodeId),
    sessions: () => queues.all(),
    sessionCount: () => queues.size(),
    openSession: (nodeId, resume) => queues.open(nodeId, dnsJson, resume),
    setConnected: (s, connected) => queues.setConnected(queued(s), connected),
    forgetSession: s => queues.forget(queued(s)),
    fullMap (s) {
      const sentPeers = new Set<string>()
      for (const id of peers.peersOf(s.nodeId)) if (entries.has(id) && peers.isMember(id)) sentPeers.add(id)
      const filterRef = peers.filterFor(s.nodeId)
      return queues.fullMap(queued(s), { sentPeers, filterRef, filterJson: filterJson(filterRef), selfJson: entries.get(s.nodeId)!.selfJson, dnsJson, natJson })
    },
    resumeDelta (s) {
      const self = entries.get(s.nodeId)
      if (self !== undefined) queues.queueSelf(queued(s), self.selfJson)
      queues.queueDns(queued(s), dnsJson)
      queues.queueNat(queued(s), natJson)
      return queues.delta(queued(s))
    },
    delta: s => queues.hasPending(queued(s)) ? queues.delta(queued(s)) : undefined,
    dirty: () => queues.dirty(),
    settle: s => queues.settle(queued(s))
  }
}
