/**
 * @warren/node is the daemon that runs on every device: it joins the mesh, keeps a live
 * network map, and turns it into WireGuard, addresses, routes, nftables and MagicDNS.
 */
export * from './control/index.js'
export * from './daemon/index.js'
export * from './localapi/index.js'
export * from './runner/index.js'
export * from './wireguard/index.js'
export * from './router/index.js'
export * from './engine/index.js'
export { createNftablesFirewall, createNftSession, compileFilter, filterAllows, type NftablesFirewall, type NftSession } from './firewall/index.js'
export * from './nat/index.js'
export { createUdpRelayClient, mapSessionRelayControl, type RelayControl, type UdpRelayClientInit, type UdpRelayClientHandle } from './nat/udp-relay-client.js'
