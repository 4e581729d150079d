import type { PeerCallMeMaybe } from '@warren/protocol'
import { createTokenBuckets } from '@warren/relay'
import { findPeer, type MeshView } from '../relay/relay-broker.js'
import type { MapLogger } from './types.js'

export interface CallMeMaybeOptions {
  mesh: MeshView
  /** send delivers the call to the peer's map session (false when it has none) */
  send: (nodeId: string, msg: PeerCallMeMaybe) => boolean
  /**
   * calls per node: burst and per second (default 256, 4/s). A node calls each peer it has
   * no direct path to when it starts a discovery burst, so the burst covers a node that
   * meets many peers at once; retries back off, so a node settles far below the rate.
   */
  rate?: { burst: number, perSecond: number }
  log?: MapLogger
}

/**
 * createCallMeMaybe returns what handles a node's CallMeMaybe: it is passed on to the
 * peer as PeerCallMeMaybe when the caller is a member, the policy lets the two talk (the
 * peer is in the caller's peer set) and the caller is within its rate. Anything else is
 * dropped: a call is advisory, and a node that is not heard starts its burst on its own.
 */
export function createCallMeMaybe (opts: CallMeMaybeOptions): (nodeId: string, peer: string) => void {
  const { mesh, log } = opts
  const rate = createTokenBuckets(opts.rate?.burst ?? 256, opts.rate?.perSecond ?? 4)
  return (nodeId, peer) => {
    const self = mesh.node(nodeId)
    if (self === undefined || !mesh.isMember(nodeId)) return
    if (!rate.take(nodeId)) {
      log?.debug({ node: nodeId }, 'call-me-maybe dropped: the node calls peers too often')
      return
    }
    const other = findPeer(mesh, nodeId, peer)
    if (other === undefined || other.id === nodeId || !mesh.isMember(other.id)) {
      log?.debug({ node: nodeId, peer }, 'call-me-maybe dropped: no such peer that the policy lets the node talk to')
      return
    }
    opts.send(other.id, { type: 'call-me-maybe', peer: self.wgKey, peerId: self.id })
  }
}
