import type { Logger } from 'pino'
import type { DataPlaneInfo, Netmap, RoutingPrefs } from '@warren/protocol'
import type { CommandRunner } from '../runner/index.js'
import type { WireGuardMode, WireGuardPeerStatus } from '../wireguard/types.js'
import type { SharedPort } from '../nat/types.js'

/** DataPlaneContext is what a data plane needs to know about this daemon. */
export interface DataPlaneContext {
  stateDir: string
  interfaceName: string
  wireguardMode: WireGuardMode
  /** the wireguard-go program to use instead of the newest one installed */
  wireguardGo?: string
  privateKey: string
  listenPort: number
  runner: CommandRunner
  logger: Logger
  resolvConfPath?: string
  magicDnsPort?: number
}

/**
 * DataPlane is everything the daemon changes on the system for one mesh: the WireGuard
 * interface and its peers, addresses and routes, the nftables table, MagicDNS and the
 * host resolver. The daemon only says "make it like this netmap" or "remove it all".
 * Kernel state outlives the daemon on purpose (fail-closed): only `down` removes it.
 */
export interface DataPlane {
  /**
   * apply makes the system match the netmap and this node's route settings (none: it
   * neither routes nor accepts routes); applying the same again changes nothing. The
   * controller URL is what an exit node must not carry (the map session's own path).
   */
  apply(netmap: Netmap, routing?: RoutingPrefs, controller?: string): Promise<void>
  /**
   * setPeerEndpoints sets the WireGuard endpoint the path manager chose per peer (key ->
   * host:port), now and for later applies; peers left out use the map's first endpoint.
   * Only WireGuard peers change, and their sessions stay.
   */
  setPeerEndpoints(endpoints: ReadonlyMap<string, string>): Promise<void>
  /** peerStats reads live WireGuard counters (`wg show dump`); empty when there is no interface */
  peerStats(): Promise<WireGuardPeerStatus[]>
  /** implementation says which WireGuard carries the mesh; undefined until the interface is up */
  implementation(): DataPlaneInfo | undefined
  /** listenPort is the WireGuard UDP port, for the endpoints the controller hands to peers */
  listenPort(): number
  /** ping sends one echo to a mesh address and returns the round trip in milliseconds */
  ping(address: string): Promise<number>
  /** down removes the interface, its addresses and routes, the firewall table and restores the resolver */
  down(): Promise<void>
  /** release stops in-process parts (DNS sockets) and leaves kernel state as it is */
  release(): Promise<void>
  /** sharedPort is the WireGuard port shared with the daemon (STUN, probes), once the mesh address exists */
  sharedPort?(): SharedPort | undefined
  /** refreshSharedPort puts the host's current addresses into the shared-port rules; true when they changed */
  refreshSharedPort?(): Promise<boolean>
}
