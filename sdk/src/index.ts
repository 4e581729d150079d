/**
 * @warren/sdk is what apps embed: a LocalAPI client for the daemon, an admin API client
 * for the controller, and the transports both use (also at `@warren/sdk/transport`).
 *
 * @example
 * ```ts
 * import { createAdminClient } from '@warren/sdk'
 * const admin = createAdminClient({ controller: 'https://ctl:8443', apiKey: process.env.WARREN_API_KEY })
 * const nodes = await admin.nodes.list()
 * ```
 */
export * from './admin-client.js'
export * from './local-client.js'
export * from './admin-policy.js'
export * from './transport/index.js'
export * from './mesh.js'
export * from './embedded.js'
/** WarrenError is what every SDK call throws; `code` says why (see MeshErrorCode). */
export { WarrenError, isWarrenError } from '@warren/protocol'
