import type { FilterRule } from '@warren/protocol'

/** FirewallContext is what the engine knows besides the filter: the mesh interface to judge. */
export interface FirewallContext {
  interfaceName: string
}

/**
 * Firewall enforces a node's inbound packet filter. `set` takes the whole desired filter
 * and is safe to call again with the same one; `close` removes the enforcement (warren down).
 */
export interface Firewall {
  up: () => Promise<void>
  set: (filter: FilterRule[], ctx: FirewallContext) => Promise<void>
  close: () => Promise<void>
}

export type { CommandResult, CommandRunner } from '../runner/index.js'
