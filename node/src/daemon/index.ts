/**
 * daemon: warrend. `startDaemon` ties the control client, the data plane and the LocalAPI
 * together and keeps the node's identity and last map in its state dir.
 */
export * from './daemon.js'
export * from './data-plane.js'
export * from './state-store.js'
export * from './metrics.js'
export * from './system-data-plane.js'
export * from './magic-dns.js'
