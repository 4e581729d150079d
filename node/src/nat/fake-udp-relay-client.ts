import type { UdpRelayClient } from './types.js'

/**
 * FakeUdpRelayClient stands in for the kernel-relay client in path-manager tests: it
 * records requests, and the test grants (with an endpoint, as if the relay had acked)
 * or revokes peers.
 */
export interface FakeUdpRelayClient extends UdpRelayClient {
  /** requested lists peers in the order request() first asked for them */
  readonly requested: string[]
  /** grant makes `endpoint` the peer's relay endpoint and fires onChange */
  grant: (peerWgKey: string, endpoint: string) => void
  /** revoke drops the peer's endpoint and fires onChange */
  revoke: (peerWgKey: string) => void
  readonly closed: boolean
}

export function createFakeUdpRelayClient (): FakeUdpRelayClient {
  const requested: string[] = []
  const endpoints = new Map<string, string>()
  const handlers = new Set<(peer: string) => void>()
  let closed = false
  const fire = (peer: string): void => { for (const h of handlers) h(peer) }
  return {
    requested,
    get closed () { return closed },
    request: peer => { if (!requested.includes(peer)) requested.push(peer) },
    endpoint: peer => endpoints.get(peer),
    onChange (h) {
      handlers.add(h)
      return () => { handlers.delete(h) }
    },
    grant (peer, endpoint) {
      endpoints.set(peer, endpoint)
      fire(peer)
    },
    revoke (peer) {
      if (endpoints.delete(peer)) fire(peer)
    },
    async close () { closed = true }
  }
}
