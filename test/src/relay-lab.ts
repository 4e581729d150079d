import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { withSecretFile } from '@warren/node'
import type { Host } from './netns.js'

/** RELAY_FIXTURE is the script that runs a relay, a node stand-in or a bind sender in a namespace (see relay-fixture.ts). */
export const RELAY_FIXTURE = join(dirname(fileURLToPath(import.meta.url)), 'relay-fixture.js')

/**
 * leaveFromPort makes UDP packets a host sends from `localPort` leave from `wgPort`
 * instead: the outbound half of the node's shared-port rules, so that a bind sent by a
 * helper socket takes WireGuard's NAT mapping. Stateless, before conntrack.
 */
export async function leaveFromPort (host: Host, localPort: number, wgPort: number): Promise<void> {
  const rule = `table inet wlabshare {\n chain out {\n  type filter hook output priority raw - 10; policy accept;\n  udp sport ${localPort} udp sport set ${wgPort}\n }\n}\n`
  await host.exec(['nft', '-f', '-'], { input: rule })
}

/** LabWireGuard describes one wireguard-go interface with one peer. */
export interface LabWireGuard {
  privateKey: string
  /** this node's mesh address (a /32) */
  address: string
  listenPort: number
  peer: { publicKey: string, address: string, endpoint: string }
}

/**
 * startLabWireGuard runs wireguard-go on a host with one peer, its mesh address and a
 * route for 100.64.0.0/10; returns the interface name. Teardown of the topology stops it.
 */
export async function startLabWireGuard (host: Host, c: LabWireGuard): Promise<string> {
  const ifname = host.interfaceName()
  await host.exec(['wireguard-go', ifname])
  await withSecretFile(c.privateKey, async path => {
    await host.exec(['wg', 'set', ifname, 'private-key', path, 'listen-port', String(c.listenPort),
      'peer', c.peer.publicKey, 'allowed-ips', `${c.peer.address}/32`, 'endpoint', c.peer.endpoint, 'persistent-keepalive', '5'])
  })
  await host.exec(['ip', 'addr', 'add', `${c.address}/32`, 'dev', ifname])
  await host.exec(['ip', 'link', 'set', ifname, 'up'])
  await host.exec(['ip', 'route', 'add', '100.64.0.0/10', 'dev', ifname])
  return ifname
}
