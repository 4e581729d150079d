import type { FilterRule, Netmap } from '@warren/protocol'
import type { WireGuardChanges } from '../wireguard/types.js'
import type { RouterChanges } from '../router/types.js'

/** FirewallContext is what the engine knows besides the filter: the mesh interface to judge. */
export interface FirewallContext {
  interfaceName: string
}

/**
 * Firewall enforces this node's inbound packet filter (the nftables adapter implements
 * it). `set` takes the whole filter and is safe to repeat; `close` removes enforcement.
 */
export interface Firewall {
  up: () => Promise<void>
  set: (filter: FilterRule[], ctx: FirewallContext) => Promise<void>
  close: () => Promise<void>
  /** release stops what runs in the background for it (a long-lived nft) and keeps enforcement */
  release?: () => Promise<void>
}

/** DnsConfigurator follows the netmap with MagicDNS answers and host resolver settings. */
export interface DnsConfigurator {
  set: (netmap: Netmap) => Promise<void>
  close?: () => Promise<void>
}

/** EngineLocal is what the engine needs from this node besides the map. */
export interface EngineLocal {
  privateKey: string
  interfaceName: string
  listenPort?: number
  /** endpoints the path manager chose, per peer WireGuard key; they win over the map's first endpoint */
  endpoints?: ReadonlyMap<string, string>
}

/** ApplyResult says what one apply did and how long it took (for metrics and logs). */
export interface ApplyResult {
  durationMs: number
  /** false when this node is pending approval or expired: it then gets no peers */
  active: boolean
  peers: number
  wireguard: WireGuardChanges
  router: RouterChanges
}

/**
 * Engine turns network maps into system state through its adapters. Applying the same
 * map twice changes nothing; concurrent applies run one after another.
 */
export interface Engine {
  apply: (netmap: Netmap, local: EngineLocal) => Promise<ApplyResult>
  /**
   * applyWireGuard sets only the WireGuard peers (a path changed): no firewall, route or
   * DNS work. A changed endpoint keeps the peer's WireGuard session.
   */
  applyWireGuard: (netmap: Netmap, local: EngineLocal) => Promise<WireGuardChanges>
  /** close removes what the adapters put on the system: `warren down` */
  close: () => Promise<void>
}
