/**
 * The relays the controller runs. The kernel relay's controller side: the broker that
 * decides who gets an allocation (relay-broker.ts), the relay the controller embeds
 * (embedded-relay.ts), and the control connections of standalone relays
 * (relay-link-server.ts). The TLS path (tls-relay.ts): nodes that cannot send UDP carry
 * their WireGuard packets over one TLS connection to the controller's HTTPS port
 * (TLS_RELAY_PATH), authenticated with the machine key and limited to the pairs the
 * policy lets talk.
 */
export * from './relay-broker.js'
export * from './embedded-relay.js'
export * from './relay-link-server.js'
export * from './tls-relay.js'
