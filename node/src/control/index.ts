/**
 * control: the node's client of the controller. `registerNode` joins or logs in;
 * `createMapSession` keeps the live network map; `localEndpoints` says where peers may
 * reach this node directly.
 */
export * from './backoff.js'
export * from './register.js'
export * from './login.js'
export * from './map-session.js'
export * from './endpoints.js'
