/**
 * The TLS relay the controller embeds: nodes that cannot send UDP carry their WireGuard
 * packets over one TLS connection to the controller's HTTPS port (TLS_RELAY_PATH),
 * authenticated with the machine key and limited to the pairs the policy lets talk (the
 * map's mesh). The engine is @warren/relay's, which standalone relays run too; here it
 * reads the controller's registry and the map; the map never reads it.
 */
export * from './tls-relay.js'
