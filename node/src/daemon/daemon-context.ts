import type { ChangeFeed } from '../localapi/watch.js'
import type { Logger } from 'pino'
import type { Netmap, Node, BackendState } from '@warren/protocol'
import type { ControllerTransport, ControllerTransportInit } from '@warren/sdk/transport'
import type { MapSession } from '../control/map-session.js'
import type { NodeKeys, SavedLogin, StateStore } from './state-store.js'
import type { DaemonMetrics } from './metrics.js'
import type { DataPlane } from './data-plane.js'
import type { DaemonPaths } from './paths.js'

/** MeshTransport is the part of a controller transport the daemon uses. */
export type MeshTransport = Pick<ControllerTransport, 'request' | 'webSocket' | 'close'>

/**
 * DaemonContext is one daemon's parts and mutable state, shared by the pieces of
 * startDaemon so each can live in its own file.
 */
export interface DaemonContext {
  readonly log: Logger
  readonly metrics: DaemonMetrics
  readonly store: StateStore
  readonly keys: NodeKeys
  readonly dataPlane: DataPlane
  /** paths chooses each peer's path (direct or relayed) and moves its WireGuard endpoint */
  readonly paths: DaemonPaths
  readonly interfaceName: string
  readonly makeTransport: (init: ControllerTransportInit) => MeshTransport
  login: SavedLogin | undefined
  /** authUrl is where the user logs in while a login at the identity provider is pending */
  authUrl: string | undefined
  netmap: Netmap | undefined
  state: BackendState
  readonly health: Map<string, string>
  session: MapSession | undefined
  transport: MeshTransport | undefined
  /** generation changes on every up/down, so stale map updates from an old session are ignored */
  generation: number
  /** changes tells LocalAPI watchers that the state, the map or the enforced policy changed */
  readonly changes: ChangeFeed
}

/** stateFor is the backend state a node's own status in the map implies. */
export function stateFor (self: Node): BackendState {
  if (self.status === 'pending') return 'NeedsApproval'
  if (self.status === 'expired') return 'NeedsLogin'
  return 'Running'
}

/**
 * updateHealthForSelf tells the user, through status, when an admin must approve this
 * node, and when its key expired and someone must log in again.
 */
export function updateHealthForSelf (health: Map<string, string>, self: Node): void {
  if (self.status === 'pending') health.set('approval', `node '${self.name}' is waiting for an admin to approve it: on the controller run 'warren admin nodes approve ${self.name}'`)
  else health.delete('approval')
  if (self.status === 'expired') health.set('expiry', `the key of node '${self.name}' expired${self.keyExpiry !== undefined ? ` at ${self.keyExpiry}` : ''}: log in again with 'warren up' (or 'warren up --auth-key KEY')`)
  else health.delete('expiry')
}
