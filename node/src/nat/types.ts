/**
 * Interfaces between the parts that connect a node to its peers with no open port:
 * the shared WireGuard port (STUN and control packets), path probing, the kernel UDP
 * relay and the TLS relay. The path manager picks one path per peer and sets it as
 * the peer's WireGuard endpoint; no part here carries direct-path data packets.
 */

/** UdpAddress is an IP address and port; IPv6 addresses without brackets. */
export interface UdpAddress {
  address: string
  port: number
}

/** SharedPortPacket is a STUN answer or a Warren control packet that arrived on the WireGuard port. */
export interface SharedPortPacket {
  kind: 'stun' | 'control'
  data: Uint8Array
  from: UdpAddress
}

/**
 * SharedPort sends and receives non-WireGuard packets on WireGuard's UDP port, so that
 * STUN learns that port's NAT mapping and probes and binds travel the same NAT mapping
 * as WireGuard's data, over IPv4 and IPv6. The real one is a daemon socket per family plus
 * stateless nftables rules; tests use a fake.
 */
export interface SharedPort {
  /** wgPort is the WireGuard port packets leave from */
  readonly wgPort: number
  /** send sends a packet that leaves from the WireGuard port; `ttl` limits its hops (punching) */
  send: (data: Uint8Array, to: UdpAddress, opts?: { ttl?: number }) => Promise<void>
  /** onPacket registers a handler for packets of one kind; returns a function that removes it */
  onPacket: (kind: SharedPortPacket['kind'], handler: (p: SharedPortPacket) => void) => () => void
  close: () => Promise<void>
}

/** PathKind says how WireGuard reaches a peer. */
export type PathKind = 'direct' | 'udp-relay' | 'tls-relay'

/** PeerPath is the path in use to one peer, as `warren status` shows it. */
export interface PeerPath {
  kind: PathKind
  /** the WireGuard endpoint for the peer (the peer itself, a relay port, or a loopback port) */
  endpoint: string
  /** relay id when relayed */
  relay?: string
  /** last measured round trip of a probe, in milliseconds */
  latencyMs?: number
}

/**
 * UdpRelayClient keeps kernel-relay allocations: the controller grants one per peer on
 * request (only for pairs the policy lets talk), the client binds its side from the
 * WireGuard port (through SharedPort) and refreshes the bind. `endpoint` is then the
 * relay port that WireGuard uses as the peer's endpoint.
 */
export interface UdpRelayClient {
  /** request asks the controller for an allocation toward a peer (idempotent) */
  request: (peerWgKey: string) => void
  /** endpoint is the relay host:port for the peer once both sides bound (the relay says so in its ack) */
  endpoint: (peerWgKey: string) => string | undefined
  /**
   * release says the peer no longer needs a relay (the direct path has held for a while):
   * the controller frees the allocation once neither node of the pair holds it, and a
   * later request asks for one again
   */
  release: (peerWgKey: string) => void
  /** onChange fires when an allocation is granted, bound, revoked or lost */
  onChange: (handler: (peerWgKey: string) => void) => () => void
  close: () => Promise<void>
}

/**
 * TlsRelayClient carries a peer's WireGuard packets over one outbound TLS connection to
 * a relay when UDP is blocked: WireGuard's endpoint for the peer is a loopback UDP port
 * that the client owns.
 */
export interface TlsRelayClient {
  /** endpoint opens (or returns) the loopback endpoint 127.0.0.1:port for a peer */
  endpoint: (peerWgKey: string) => Promise<string>
  /** release closes a peer's loopback endpoint */
  release: (peerWgKey: string) => void
  /** connected says whether the TLS connection is up (the one that carries `peerWgKey`, when given) */
  connected: (peerWgKey?: string) => boolean
  /**
   * onStateChange fires when the TLS connection comes up (true) or goes down (false):
   * a loopback endpoint carries nothing while it is down; returns a function that removes the handler
   */
  onStateChange: (handler: (connected: boolean) => void) => () => void
  /**
   * onMoved, for a client of several relays, fires when a peer's pair moved to another
   * relay: its endpoint was released, and endpoint() opens one on the new relay
   */
  onMoved?: (handler: (peerWgKey: string) => void) => () => void
  close: () => Promise<void>
}
