import { randomBytes } from 'node:crypto'
import type { FilterRule } from '@warren/protocol'

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

/** QueuedSession is a session with what it was sent and what is queued for it. */
export interface QueuedSession extends FanoutSession {
  seq: number
  connected: boolean
  /** the peers this node has, counting what is queued for it */
  sentPeers: Set<string>
  filterRef: FilterRule[] | null
  filterJson: string
  selfJson: string
  dnsJson: string
  /** the NAT config (STUN servers, relays) sent, or '' when none */
  natJson: string
  pendingChanged: Set<string>
  pendingRemoved: Set<string>
  pendingSelf: boolean
  pendingFilter: boolean
  pendingDns: boolean
  pendingNat: boolean
}

/** FirstMap is what a full map holds, as serialized pieces shared with other sessions. */
export interface FirstMap { sentPeers: Set<string>, filterRef: FilterRule[], filterJson: string, selfJson: string, dnsJson: string, natJson: string }

/**
 * DeltaQueues holds every session's queued changes and turns them into numbered
 * messages. Queued changes merge (a peer added then changed is sent once, a peer added
 * then removed only as removed) until the session's next message. A connected session
 * with queued changes is dirty until the map service has sent it its delta.
 */
export interface DeltaQueues {
  get: (nodeId: string) => QueuedSession | undefined
  all: () => Iterable<QueuedSession>
  size: () => number
  /** open resumes the node's session when `resume` names it at its current seq, else starts a new one */
  open: (nodeId: string, dnsJson: string, resume?: { session: string, seq: number }) => { session: QueuedSession, resumed: boolean }
  setConnected: (s: QueuedSession, connected: boolean) => void
  forget: (s: QueuedSession) => void
  queueAdd: (s: QueuedSession, peerId: string) => void
  queueRemove: (s: QueuedSession, peerId: string) => void
  queueFilter: (s: QueuedSession, ref: FilterRule[], json: string) => void
  queueSelf: (s: QueuedSession, selfJson: string) => void
  queueDns: (s: QueuedSession, dnsJson: string) => void
  queueNat: (s: QueuedSession, natJson: string) => void
  /** fullMap resets a session to `map` and returns it as the first message (seq 1) */
  fullMap: (s: QueuedSession, map: FirstMap) => string[]
  /** delta takes the queued changes as the next message (seq + 1), even when none are queued */
  delta: (s: QueuedSession) => string[]
  hasPending: (s: QueuedSession) => boolean
  dirty: () => Iterable<QueuedSession>
  settle: (s: QueuedSession) => void
}

/**
 * createDeltaQueues builds messages in pieces (see Outbox.send): a peer view or a
 * filter goes in as the one string that every recipient shares, never copied per
 * recipient. peerJson gives a node's serialized peer view, or undefined once it is gone.
 */
export function createDeltaQueues (peerJson: (id: string) => string | undefined, onDirty: () => void): DeltaQueues {
  const sessions = new Map<string, QueuedSession>()
  const dirty = new Set<QueuedSession>()

  function touch (s: QueuedSession): void {
    if (!s.connected) return
    dirty.add(s)
    onDirty()
  }

  /** pushPeers adds the peer views of ids (those still known) to out, comma-separated. */
  function pushPeers (out: string[], ids: Iterable<string>): void {
    let first = true
    for (const id of ids) {
      const json = peerJson(id)
      if (json === undefined) continue
      if (!first) out.push(',')
      out.push(json)
      first = false
    }
  }

  function clearPending (s: QueuedSession): void {
    s.pendingChanged.clear()
    s.pendingRemoved.clear()
    s.pendingSelf = false
    s.pendingFilter = false
    s.pendingDns = false
    s.pendingNat = false
  }

  const hasPending = (s: QueuedSession): boolean =>
    s.pendingSelf || s.pendingFilter || s.pendingDns || s.pendingNat || s.pendingChanged.size > 0 || s.pendingRemoved.size > 0

  function newSession (nodeId: string, dnsJson: string): QueuedSession {
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
      natJson: '',
      pendingChanged: new Set(),
      pendingRemoved: new Set(),
      pendingSelf: false,
      pendingFilter: false,
      pendingDns: false,
      pendingNat: false
    }
  }

  return {
    get: nodeId => sessions.get(nodeId),
    all: () => sessions.values(),
    size: () => sessions.size,
    open (nodeId, dnsJson, resume) {
      const s = sessions.get(nodeId)
      if (s !== undefined && resume !== undefined && resume.session === s.id && resume.seq === s.seq) return { session: s, resumed: true }
      if (s !== undefined) dirty.delete(s)
      const fresh = newSession(nodeId, dnsJson)
      sessions.set(nodeId, fresh)
      return { session: fresh, resumed: false }
    },
    setConnected (s, connected) {
      s.connected = connected
      if (!connected) dirty.delete(s)
      else if (hasPending(s)) touch(s)
    },
    forget (s) {
      s.connected = false
      dirty.delete(s)
      if (sessions.get(s.nodeId) === s) sessions.delete(s.nodeId)
    },
    queueAdd (s, peerId) {
      s.sentPeers.add(peerId)
      s.pendingRemoved.delete(peerId)
      s.pendingChanged.add(peerId)
      touch(s)
    },
    queueRemove (s, peerId) {
      s.sentPeers.delete(peerId)
      s.pendingChanged.delete(peerId)
      s.pendingRemoved.add(peerId)
      touch(s)
    },
    queueFilter (s, ref, json) {
      s.filterRef = ref
      if (json === s.filterJson) return
      s.filterJson = json
      s.pendingFilter = true
      touch(s)
    },
    queueSelf (s, selfJson) {
      if (selfJson === s.selfJson) return
      s.selfJson = selfJson
      s.pendingSelf = true
      touch(s)
    },
    queueDns (s, dnsJson) {
      if (dnsJson === s.dnsJson) return
      s.dnsJson = dnsJson
      s.pendingDns = true
      touch(s)
    },
    queueNat (s, natJson) {
      if (natJson === s.natJson || natJson === '') return
      s.natJson = natJson
      s.pendingNat = true
      touch(s)
    },
    fullMap (s, map) {
      clearPending(s)
      Object.assign(s, map)
      s.seq = 1
      dirty.delete(s)
      const out = [`{"type":"map","session":"${s.id}","seq":${s.seq},"netmap":{"self":`, s.selfJson, ',"peers":[']
      pushPeers(out, s.sentPeers)
      out.push('],"filter":', s.filterJson, ',"dns":', s.dnsJson)
      if (s.natJson !== '') out.push(',"nat":', s.natJson)
      out.push('}}')
      return out
    },
    delta (s) {
      s.seq++
      dirty.delete(s)
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
      if (s.pendingNat) out.push(',"nat":', s.natJson)
      out.push('}')
      clearPending(s)
      return out
    },
    hasPending,
    dirty: () => dirty,
    settle (s) { dirty.delete(s) }
  }
}
