import type { FilterRule, Netmap, RoutingPrefs } from '@warren/protocol'
import type { WireGuardChanges } from '../wireguard/types.js'
import type { RouterChanges } from '../router/types.js'

/**
 * SharedPortRules let the daemon's control socket share WireGuard's UDP port (the firewall
 * renders them, see firewall/shared-port-rules.ts): STUN answers and control packets that
 * arrive on `wgPort` go to controlAddress:controlPort (over IPv6: controlAddress6:controlPort),
 * and what those sockets send leaves from `wgPort` with the egress interface's address.
 */
export interface SharedPortRules {
  wgPort: number
  /** the mesh IPv4 address the control socket is bound to (not a host address: no listener outside the mesh) */
  controlAddress: string
  controlPort: number
  /** egress maps each interface packets may leave by to the IPv4 source address they get */
  egress: Record<string, string>
  /**
   * the mesh IPv6 address a second control socket is bound to (same port), when the host
   * has IPv6: the rules then share the WireGuard port over IPv6 too
   */
  controlAddress6?: string
  /** egress6 is egress for IPv6 (present with controlAddress6) */
  egress6?: Record<string, string>
}

/**
 * FirewallContext is what the engine knows besides the filter: the mesh interface to
 * judge, and the shared-port rules when the daemon's control socket is open.
 */
export interface FirewallContext {
  interfaceName: string
  sharedPort?: SharedPortRules
  /** subnetRouter is set when this node serves subnet routes: what it forwards, and the filter for it */
  subnetRouter?: SubnetRouterRules
}

/**
 * SubnetRouterRules say what a subnet router enforces: the routes it serves, the forward
 * filter (the netmap's rules with `dsts`), whether it masquerades what it forwards, and
 * the interfaces whose forwarding was switched on for the routes (locked to the mesh).
 */
export interface SubnetRouterRules {
  routes: string[]
  filter: FilterRule[]
  snat: boolean
  lockedInterfaces: string[]
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
  /** sharedPort goes to the firewall as it is (see SharedPortRules) */
  sharedPort?: SharedPortRules
  /** routing is this node's subnet-route settings from `warren up` (none: NO_ROUTING) */
  routing?: RoutingPrefs
  /** exitBypass are the addresses reached outside the mesh while an exit node is in use (controller, relays) */
  exitBypass?: string[]
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
