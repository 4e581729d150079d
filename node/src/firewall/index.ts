/** firewall enforces the node's inbound packet filter with nftables (see nftables.ts, ruleset.ts). */
export * from './types.js'
export * from './ruleset.js'
export * from './nftables.js'
export * from './nft-session.js'
