/** wireguard is the adapter for the WireGuard interface (wg, wireguard-go); its fake is in fake-wireguard.ts. */
export * from './types.js'
export * from './wireguard.js'
export { parseWireGuardDump, checkWireGuardConfig } from './wireguard-plan.js'
export * from './wireguard-go-builds.js'
