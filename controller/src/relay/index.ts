/**
 * The relays the controller runs. The kernel relay's controller side: the broker that
 * decides who gets an allocation (relay-broker.ts), the relay the controller embeds
 * (embedded-relay.ts), and the control connections of standalone relays
 * (relay-link-server.ts). The TLS relay lives in ../tls-relay.
 */
export * from './relay-broker.js'
export * from './embedded-relay.js'
export * from './relay-link-server.js'
export * from './relay-members-feed.js'
