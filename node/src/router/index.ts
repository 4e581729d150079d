/** router is the adapter for the mesh interface's addresses and routes (`ip`); its fake is in fake-router.ts. */
export * from './types.js'
export * from './router.js'
export { checkRouterConfig } from './router-plan.js'
export { normalizeCidr, normalizeAddress, checkInterfaceName } from './cidr.js'
export * from './forwarding.js'
export * from './exit-routing.js'
export { EXIT_TABLE, EXIT_FWMARK, EXIT_PRIORITY } from './exit-routing-plan.js'
