/** nat lets a node reach peers with no open port: the shared WireGuard port, STUN, netcheck and path selection. */
export * from './types.js'
export * from './shared-port.js'
export * from './netcheck.js'
export * from './nat-monitor.js'
export * from './disco.js'
export * from './path-manager.js'
export * from './path-service.js'
export * from './tls-relay-client.js'
