/**
 * @warren/controller is the control plane: identities, devices, auth keys, the access
 * policy, and the map sessions that tell each node what it may see.
 *
 * @example
 * ```ts
 * import { startController } from '@warren/controller'
 * const c = await startController({ stateDir: '/var/lib/warren', listen: '0.0.0.0:8443' })
 * console.log(c.url, c.displayFingerprint)
 * ```
 */
export * from './server.js'
export * from './app.js'
export { policyRoutes } from './routes/policy.js'
export * from './state.js'
export * from './store.js'
export * from './tls.js'
export * from './ipam.js'
export * from './names.js'
export * from './metrics.js'
export * from './proof.js'
export * from './policy-service.js'
export * as policy from './policy/index.js'
export * as map from './map/index.js'
export * from './stun-server.js'
export * from './relay/index.js'
export * from './tls-relay/index.js'
export { LOGIN_PAGE_PATH, type OidcOptions } from './oidc/index.js'
