/**
 * The relays the controller runs. tls-relay.ts is the TLS path: nodes that cannot send
 * UDP carry their WireGuard packets over one TLS connection to the controller's HTTPS
 * port (TLS_RELAY_PATH), authenticated with the machine key and limited to the pairs
 * the policy lets talk.
 */
export * from './tls-relay.js'
