/**
 * The controller's side of the kernel relay: the broker that decides who gets an
 * allocation (relay-broker.ts), the relay the controller embeds (embedded-relay.ts), and the control
 * connections of standalone relays (relay-link-server.ts).
 */
export * from './relay-broker.js'
export * from './embedded-relay.js'
export * from './relay-link-server.js'
