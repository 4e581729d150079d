/** router is the adapter for the mesh interface's addresses and routes: real (`ip`) and fake. */
export * from './types.js'
export * from './router.js'
export * from './fake-router.js'
export { checkRouterConfig } from './router-plan.js'
export { normalizeCidr, normalizeAddress, checkInterfaceName } from './cidr.js'
