/**
 * The controller's side of the kernel relay: the broker that decides who gets an
 * allocation (relay-broker.ts) and the relay the controller embeds (embedded-relay.ts).
 */
export * from './relay-broker.js'
export * from './embedded-relay.js'
