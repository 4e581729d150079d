import { randomBytes } from 'node:crypto'
import type { Node, Peer, FilterRule } from '@warren/protocol'
import type { MapPolicyChange } from './types.js'
import type { PeerReader } from './mesh-policy.js'

/**
 * FanoutSession is what the fan-out keeps for one node's map session: the session id
 * and sequence number of the last message, and whether a socket is attached. Changes
 * queue for a session while it is away, so a resume gets them as one delta.
 */
export interface FanoutSession {
  readonly nodeId: string
  readonly id: string
  readonly seq: number
  readonly connected: boolean
}

interface Session extends FanoutSession {
  seq: number
  connected: boolean
  /** the peers this node has, counting what is queued for it */
  sentPeers: Set<string>
  filterRef: FilterRule[] | null
  filterJson: string
  selfJson: string
  dnsJson: string
  pendingChanged: Set<string>
  pendingRemoved: Set<string>
  pendingSelf: boolean
  pendingFilter: boolean
  pendingDns: boolean
}

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
  node: (id: string) => Node | undefined
  nodeCount: () => number

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
  /** onDirty is called when a connected session gets queued changes (to arm a flush) */
  onDirty?: () => void
}

/** peerView is what other nodes see of a node: never its machine key, status or creation time. */
function peerView (n: Node): Peer {
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
  const onDirty = opts.onDirty ?? (() => {})
  const entries = new Map<string, NodeEntry>()
  const sessions = new Map<string, Session>()
  const dirty = new Set<Session>()
  const filterJsonCache = new WeakMap<FilterRule[], string>()
  let dnsJson = dnsText(opts.domain)

  function entryFor (n: Node): NodeEntry {
    const e: NodeEntry = entries.get(n.id) ?? { node: n, peerJson: '', selfJson: '' }
    e.node = n
    e.peerJson = JSON.stringify(peerView(n))
    e.selfJson = JSON.stringify(n)
    entries.set(n.id, e)
    return e
  }

  function touch (s: Session): void {
    if (!s.connected) return
    dirty.add(s)
    onDirty()
  }

  function queueAdd (s: Session, peerId: string): void {
    s.sentPeers.add(peerId)
    s.pendingRemoved.delete(peerId)
    s.pendingChanged.add(peerId)
    touch(s)
  }

  function queueRemove (s: Session, peerId: string): void {
    s.sentPeers.delete(peerId)
    s.pendingChanged.delete(peerId)
    s.pendingRemoved.add(peerId)
    touch(s)
  }

  /** reconcilePeers compares a session's peers with the policy's answer in full. */
  function reconcilePeers (s: Session): void {
    const want = peers.peersOf(s.nodeId)
    for (const id of s.sentPeers) if (!want.has(id) || !entries.has(id)) queueRemove(s, id)
    for (const id of want) if (!s.sentPeers.has(id) && entries.has(id)) queueAdd(s, id)
  }

  /** filterJson serializes each distinct filter once: nodes that share a filter share its array. */
  function filterJson (ref: FilterRule[]): string {
    let json = filterJsonCache.get(ref)
    if (json === undefined) filterJsonCache.set(ref, json = JSON.stringify(ref))
    return json
  }

  function reconcileFilter (s: Session): void {
    const ref = peers.filterFor(s.nodeId)
    if (ref === s.filterRef) return
    s.filterRef = ref
    const json = filterJson(ref)
    if (json === s.filterJson) return
    s.filterJson = json
    s.pendingFilter = true
    touch(s)
  }

  /** applyPolicyChange queues what the engine says one node's change did to other sessions. */
  function applyPolicyChange (changedId: string, change: MapPolicyChange, touched: Set<Session>): void {
    const visible = peers.isMember(changedId) && entries.has(changedId)
    for (const id of change.peersGained) {
      const s = sessions.get(id)
      if (s === undefined || id === changedId || !visible) continue
      queueAdd(s, changedId)
      touched.add(s)
    }
    for (const id of change.peersLost) {
      const s = sessions.get(id)
      if (s === undefined || !s.sentPeers.has(changedId)) continue
      queueRemove(s, changedId)
      touched.add(s)
    }
    for (const id of change.filterChanged) {
      const s = sessions.get(id)
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
    const e = entryFor(n)
    const touched = new Set<Session>()
    applyPolicyChange(n.id, change.policy, touched)
    if (oldPeerJson !== e.peerJson && change.member) {
      for (const id of peers.peersOf(n.id)) {
        const s = sessions.get(id)
        if (s === undefined || !s.sentPeers.has(n.id)) continue
        queueAdd(s, n.id)
        touched.add(s)
      }
    }
    const own = sessions.get(n.id)
    if (own !== undefined) {
      touched.add(own)
      if (own.selfJson !== e.selfJson) {
        own.selfJson = e.selfJson
        own.pendingSelf = true
        touch(own)
      }
      if (change.wasMember !== change.member || change.policy.peersGained.size > 0 || change.policy.peersLost.size > 0) reconcilePeers(own)
      reconcileFilter(own)
    }
    return touched.size
  }

  function nodeRemoved (n: Node, policy: MapPolicyChange): number {
    if (!entries.has(n.id)) return 0
    entries.delete(n.id)
    const touched = new Set<Session>()
    applyPolicyChange(n.id, policy, touched)
    return touched.size
  }

  /** pushPeers adds the peer views of ids (those still known) to out, comma-separated. */
  function pushPeers (out: string[], ids: Iterable<string>): void {
    let first = true
    for (const id of ids) {
      const e = entries.get(id)
      if (e === undefined) continue
      if (!first) out.push(',')
      out.push(e.peerJson)
      first = false
    }
  }

  function clearPending (s: Session): void {
    s.pendingChanged.clear()
    s.pendingRemoved.clear()
    s.pendingSelf = false
    s.pendingFilter = false
    s.pendingDns = false
  }

  function hasPending (s: Session): boolean {
    return s.pendingSelf || s.pendingFilter || s.pendingDns || s.pendingChanged.size > 0 || s.pendingRemoved.size > 0
  }

  /**
   * deltaText is a session's queued changes as its next delta, in pieces: the peer views
   * and the filter go in as the shared strings they are, not copied per recipient.
   */
  function deltaText (s: Session): string[] {
    s.seq++
    const out = [`{"type":"delta","seq":${s.seq}`]
    if (s.pendingSelf) out.push(',"self":', s.selfJson)
    if (s.pendingChanged.size > 0) {
      out.push(',"peersChanged":[')
      pushPeers(out, s.pendingChanged)
      out.push(']')
    }
    if (s.pendingRemoved.size > 0) out.push(',"peersRemoved":', JSON.stringify([...s.pendingRemoved]))
    if (s.pendingFilter) out.push(',"filter":', s.filterJson)
    if (s.pendingDns) out.push(',"dns":', s.dnsJson)
    out.push('}')
    clearPending(s)
    return out
  }

  function newSession (nodeId: string): Session {
    return {
      nodeId,
      id: randomBytes(18).toString('base64url'),
      seq: 0,
      connected: false,
      sentPeers: new Set(),
      filterRef: null,
      filterJson: '[]',
      selfJson: '',
      dnsJson,
      pendingChanged: new Set(),
      pendingRemoved: new Set(),
      pendingSelf: false,
      pendingFilter: false,
      pendingDns: false
    }
  }

  const own = (s: FanoutSession): Session => s as Session

  return {
    loadNodes (nodes) { for (const n of nodes) entryFor(n) },
    nodeChanged,
    nodeRemoved,
    policyChanged (ids) {
      const list = ids === undefined ? [...sessions.values()] : [...ids].map(id => sessions.get(id))
      for (const s of list) {
        if (s === undefined) continue
        reconcilePeers(s)
        reconcileFilter(s)
      }
    },
    setDomain (domain) {
      dnsJson = dnsText(domain)
      for (const s of sessions.values()) {
        if (s.dnsJson === dnsJson) continue
        s.dnsJson = dnsJson
        s.pendingDns = true
        touch(s)
      }
    },
    node: id => entries.get(id)?.node,
    nodeCount: () => entries.size,

    session: nodeId => sessions.get(nodeId),
    sessions: () => sessions.values(),
    sessionCount: () => sessions.size,
    openSession (nodeId, resume) {
      const s = sessions.get(nodeId)
      if (s !== undefined && resume !== undefined && resume.session === s.id && resume.seq === s.seq) return { session: s, resumed: true }
      if (s !== undefined) dirty.delete(s)
      const fresh = newSession(nodeId)
      sessions.set(nodeId, fresh)
      return { session: fresh, resumed: false }
    },
    setConnected (s, connected) {
      const x = own(s)
      x.connected = connected
      if (!connected) dirty.delete(x)
      else if (hasPending(x)) touch(x)
    },
    forgetSession (s) {
      const x = own(s)
      x.connected = false
      dirty.delete(x)
      if (sessions.get(x.nodeId) === x) sessions.delete(x.nodeId)
    },
    fullMap (s) {
      const x = own(s)
      const self = entries.get(x.nodeId)!
      clearPending(x)
      x.sentPeers = new Set()
      for (const id of peers.peersOf(x.nodeId)) {
        if (entries.has(id) && peers.isMember(id)) x.sentPeers.add(id)
      }
      x.filterRef = peers.filterFor(x.nodeId)
      x.filterJson = filterJson(x.filterRef)
      x.selfJson = self.selfJson
      x.dnsJson = dnsJson
      x.seq = 1
      dirty.delete(x)
      const out = [`{"type":"map","session":"${x.id}","seq":${x.seq},"netmap":{"self":`, x.selfJson, ',"peers":[']
      pushPeers(out, x.sentPeers)
      out.push('],"filter":', x.filterJson, ',"dns":', x.dnsJson, '}}')
      return out
    },
    resumeDelta (s) {
      const x = own(s)
      const self = entries.get(x.nodeId)
      if (self !== undefined && x.selfJson !== self.selfJson) { x.selfJson = self.selfJson; x.pendingSelf = true }
      if (x.dnsJson !== dnsJson) { x.dnsJson = dnsJson; x.pendingDns = true }
      dirty.delete(x)
      return deltaText(x)
    },
    delta (s) {
      const x = own(s)
      return hasPending(x) ? deltaText(x) : undefined
    },
    dirty: () => dirty,
    settle (s) { dirty.delete(own(s)) }
  }
}
