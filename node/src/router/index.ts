/** router is the adapter for the mesh interface's addresses and routes (`ip`); its fake is in fake-router.ts. */
export * from './types.js'
export * from './router.js'
export { checkRouterConfig } from './router-plan.js'
export { normalizeCidr, normalizeAddress, checkInterfaceName } from './cidr.js'
export * from './forwarding.js'
