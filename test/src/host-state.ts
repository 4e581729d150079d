import { readFileSync, statSync } from 'node:fs'
import type { Host } from './netns.js'

/**
 * host-state.ts records what a node may change in its namespace, so a test can check that
 * stopping it put everything back: each field is what one command printed (or the bytes
 * of one file), compared as text.
 */

/** HostNetworkState is a namespace's interfaces, addresses, routes, rules, firewall and resolver. */
export interface HostNetworkState {
  links: string
  addresses: string
  routes4: string
  routes6: string
  rules: string
  nftables: string
  /** the resolv.conf `ip netns exec` mounts over /etc/resolv.conf: mode and bytes */
  resolvConf: string
}

const COMMANDS: Record<Exclude<keyof HostNetworkState, 'resolvConf'>, string[][]> = {
  links: [['ip', '-br', 'link']],
  addresses: [['ip', '-br', 'addr']],
  routes4: [['ip', '-4', 'route', 'show', 'table', 'all']],
  routes6: [['ip', '-6', 'route', 'show', 'table', 'all']],
  rules: [['ip', '-4', 'rule'], ['ip', '-6', 'rule']],
  nftables: [['nft', 'list', 'ruleset']]
}

/** hostNetworkState records `host`'s state now; compare two with t.same, field by field. */
export async function hostNetworkState (host: Host): Promise<HostNetworkState> {
  const out: Partial<HostNetworkState> = {}
  for (const [field, commands] of Object.entries(COMMANDS)) {
    let text = ''
    for (const argv of commands) text += (await host.exec(argv)).stdout
    out[field as keyof typeof COMMANDS] = text
  }
  const file = `/etc/netns/${host.netns}/resolv.conf`
  let resolvConf: string
  try {
    resolvConf = `mode ${(statSync(file).mode & 0o7777).toString(8)}\n${readFileSync(file, 'utf8')}`
  } catch {
    resolvConf = 'absent'
  }
  return { ...out, resolvConf } as HostNetworkState
}
