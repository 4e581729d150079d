import type { DataPlaneInfo } from '@warren/protocol'

/** WireGuardPeerConfig is one peer as Warren wants it configured. */
export interface WireGuardPeerConfig {
  publicKey: string
  allowedIps: string[]
  /** host:port or [v6]:port; absent means wait for the peer to reach us */
  endpoint?: string
  /**
   * endpointPinned: the endpoint is a path Warren chose and confirmed (not a guess from
   * the map), so it is set again when WireGuard has roamed away from it (to a relay port
   * its peer still sends from, say)
   */
  endpointPinned?: boolean
  /** seconds; absent or 0 means off */
  persistentKeepalive?: number
}

/** WireGuardConfig is the whole desired state of one WireGuard interface. */
export interface WireGuardConfig {
  interfaceName: string
  privateKey: string
  /** absent means any port the system picks (kept once picked) */
  listenPort?: number
  peers: WireGuardPeerConfig[]
}

/** WireGuardPeerStatus is one peer as the interface reports it (`wg show IF dump`). */
export interface WireGuardPeerStatus {
  publicKey: string
  endpoint?: string
  allowedIps: string[]
  /** absent when no handshake has happened yet */
  latestHandshake?: Date
  rxBytes: number
  txBytes: number
  persistentKeepalive: number
}

/** WireGuardStatus is what `warren status` shows about the interface. No private key. */
export interface WireGuardStatus {
  interfaceName: string
  publicKey?: string
  listenPort: number
  peers: WireGuardPeerStatus[]
}

/** WireGuardChanges says what one `set` changed; all empty means nothing was touched. */
export interface WireGuardChanges {
  /** the private key or listen port changed */
  interface: boolean
  added: string[]
  updated: string[]
  removed: string[]
}

/** WireGuardMode chooses the implementation: `auto` prefers the kernel, else wireguard-go. */
export type WireGuardMode = 'auto' | 'kernel' | 'userspace'

/** WireGuardBackend is what `up` actually brought up. */
export type WireGuardBackend = 'kernel' | 'userspace'

/**
 * WireGuard is the adapter for one WireGuard interface. `set` takes the full desired
 * state and is safe to call again with the same config: it then changes nothing.
 * Peers are changed one by one, so adding or removing one never disturbs the others.
 */
export interface WireGuard {
  readonly interfaceName: string
  /** up creates the interface (or adopts one that survived a daemon restart) */
  up: () => Promise<WireGuardBackend>
  set: (desired: WireGuardConfig) => Promise<WireGuardChanges>
  status: () => Promise<WireGuardStatus>
  /** implementation says which WireGuard `up` started or adopted; undefined while down */
  implementation: () => DataPlaneInfo | undefined
  /** close removes the interface, and with it its addresses and routes */
  close: () => Promise<void>
}
