import { generateWireGuardKeyPair, generateMachineKeyPair, type Netmap, type Node, type Peer } from '@warren/protocol'

/** testNode makes a registered node with mesh addresses from its index. */
export function testNode (i: number, extra: Partial<Node> = {}): Node & { privateKey: string } {
  const wg = generateWireGuardKeyPair()
  return {
    id: `n${i}`,
    name: `node-${i}`,
    fqdn: `node-${i}.warren.internal`,
    user: 'alice',
    tags: [],
    machineKey: generateMachineKeyPair().publicKey,
    wgKey: wg.publicKey,
    ipv4: `100.64.0.${i}`,
    ipv6: `fd7a:115c:a1e0::${i}`,
    status: 'active',
    ephemeral: false,
    online: true,
    created: '2026-11-24T00:00:00.000Z',
    endpoints: [`10.99.0.${i}:41641`],
    ...extra,
    privateKey: wg.privateKey
  }
}

/** asPeer shows a node as another node's peer. */
export function asPeer (n: Node, extra: Partial<Peer> = {}): Peer {
  return { id: n.id, name: n.name, fqdn: n.fqdn, user: n.user, tags: n.tags, wgKey: n.wgKey, ipv4: n.ipv4, ipv6: n.ipv6, endpoints: n.endpoints, online: n.online, ...extra }
}

/** netmapFor is the map that `self` would receive with the given peers. */
export function netmapFor (self: Node & { privateKey?: string }, peers: Peer[], filter: Netmap['filter'] = []): Netmap {
  const { privateKey: _secret, ...node } = self
  return { self: node, peers, filter, dns: { domain: 'warren.internal', magicDns: true } }
}
