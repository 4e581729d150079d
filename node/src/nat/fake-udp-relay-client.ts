import type { UdpRelayClient } from './types.js'

/**
 * FakeUdpRelayClient stands in for the kernel-relay client in path-manager tests: it
 * records requests and releases, and the test grants (with an endpoint, as if the relay
 * had acked) or revokes peers.
 */
export interface FakeUdpRelayClient extends UdpRelayClient {
  /** requested lists peers each time request() started wanting them, in order */
  readonly requested: string[]
  /** released lists peers each time release() stopped wanting them, in order */
  readonly released: string[]
  /** wanted says whether the peer was requested and not released since */
  wanted: (peerWgKey: string) => boolean
  /** grant makes `endpoint` the peer's relay endpoint and fires onChange */
  grant: (peerWgKey: string, endpoint: string) => void
  /** revoke drops the peer's endpoint and fires onChange */
  revoke: (peerWgKey: string) => void
  readonly closed: boolean
}

/**
 * createFakeUdpRelayClient makes a fake whose release frees the allocation at once, as
 * the controller does when the peer does not hold it either: the endpoint is gone (and
 * onChange fires) on the next microtask, as a revocation would arrive.
 */
export function createFakeUdpRelayClient (): FakeUdpRelayClient {
  const requested: string[] = []
  const released: string[] = []
  const wanted = new Set<string>()
  const endpoints = new Map<string, string>()
  const handlers = new Set<(peer: string) => void>()
  let closed = false
  const fire = (peer: string): void => { for (const h of handlers) h(peer) }
  return {
    requested,
    released,
    get closed () { return closed },
    wanted: peer => wanted.has(peer),
    request (peer) {
      if (wanted.has(peer)) return
      wanted.add(peer)
      requested.push(peer)
    },
    release (peer) {
      if (!wanted.delete(peer)) return
      released.push(peer)
      queueMicrotask(() => { if (!wanted.has(peer) && endpoints.delete(peer)) fire(peer) })
    },
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
