import type { Netmap, Peer } from '@warren/protocol'

/**
 * test-netmap builds small network maps for MagicDNS tests (here and in other packages),
 * so that each test states only the names and addresses it cares about.
 */

const KEY = 'A'.repeat(43) + '='

/** TestHost is the part of a node that MagicDNS reads. */
export interface TestHost { name: string, ipv4: string, ipv6: string }

/** testPeer makes a wire Peer with the given name and addresses. */
export function testPeer (h: TestHost, id = h.name): Peer {
  return { id, name: h.name, fqdn: `${h.name}.warren.internal`, tags: [], wgKey: KEY, ipv4: h.ipv4, ipv6: h.ipv6, endpoints: [], online: true }
}

/** testNetmap makes a Netmap for `self` and `peers` in `domain`. */
export function testNetmap (self: TestHost, peers: TestHost[], domain = 'warren.internal'): Netmap {
  return {
    self: {
      id: self.name,
      name: self.name,
      fqdn: `${self.name}.${domain}`,
      tags: [],
      machineKey: KEY,
      wgKey: KEY,
      ipv4: self.ipv4,
      ipv6: self.ipv6,
      status: 'active',
      ephemeral: false,
      online: true,
      created: '2026-01-01T00:00:00.000Z',
      endpoints: []
    },
    peers: peers.map(p => testPeer(p)),
    filter: [],
    dns: { domain, magicDns: true }
  }
}
