/**
 * @warren/relay is Warren's kernel UDP relay: for each relayed pair of nodes it allocates
 * two UDP ports, learns each node's public WireGuard mapping from a sealed bind, and has
 * the kernel (nftables) forward the pair's WireGuard packets both ways. It also holds the
 * TLS relay (tls-relay.ts), which carries WireGuard packets over nodes' TLS connections
 * when UDP is blocked, with pluggable members (who may connect, who may talk to whom).
 * The controller embeds both (and decides who gets an allocation and who is a member);
 * `warren relay serve` runs them alone, driven over the relay link.
 *
 * @example
 * ```ts
 * import { startUdpRelay, loadOrCreateRelayKey } from '@warren/relay'
 * const relay = await startUdpRelay({ key: await loadOrCreateRelayKey('/var/lib/warren/relay.key'), port: 3480, publicHost: '203.0.113.1' })
 * const a = await relay.allocate({ nodeKeys: [keyA, keyB], expiresAt: Date.now() + 600_000 })
 * ```
 */
export * from './udp-relay.js'
export * from './relay-key.js'
export * from './relay-nft.js'
export * from './relay-firewall.js'
export * from './sysctls.js'
export * from './token-bucket.js'
export * from './controller-link.js'
export * from './link-key.js'
export * from './tls-relay.js'
export * from './server-tls.js'
export * from './raw-http.js'
export * from './verify.js'
export * from './relay-members.js'
export * from './tls-relay-server.js'
export * from './private-file.js'
