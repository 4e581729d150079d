/**
 * @warren/relay/testing holds fakes of the relay's system adapters (nftables, kernel
 * settings) for tests here and in other packages. Not part of the public index.
 */
export * from './fake-relay-firewall.js'
export * from './fake-sysctls.js'
export * from './tls-relay-test-client.js'
