/** nat lets a node reach peers with no open port: the shared WireGuard port, STUN and netcheck. */
export * from './types.js'
export * from './shared-port.js'
export * from './netcheck.js'
export * from './nat-monitor.js'
