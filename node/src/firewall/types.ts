/**
 * The firewall implements the engine's Firewall interface and reaches `nft` only through
 * the node's command runner; these are re-exported here for the firewall's own modules.
 */
export type { Firewall, FirewallContext, SharedPortRules, SubnetRouterRules } from '../engine/types.js'
export type { CommandResult, CommandRunner } from '../runner/index.js'
