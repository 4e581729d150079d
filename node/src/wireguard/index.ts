/** wireguard is the adapter for the WireGuard interface: real (wg, wireguard-go) and fake. */
export * from './types.js'
export * from './wireguard.js'
export * from './fake-wireguard.js'
export { parseWireGuardDump, checkWireGuardConfig } from './wireguard-plan.js'
