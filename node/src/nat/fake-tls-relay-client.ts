import type { TlsRelayClient } from './types.js'

/** FakeTlsRelayClient records what a path manager asked of the TLS relay client. */
export interface FakeTlsRelayClient extends TlsRelayClient {
  /** open maps each peer with an endpoint to it */
  readonly open: ReadonlyMap<string, string>
  /** released lists peers released, in order */
  readonly released: string[]
  /** setConnected changes what connected() says and fires onStateChange when it changed */
  setConnected: (up: boolean) => void
  /** move releases a peer's endpoint and fires onMoved, as a client of several relays does when the pair's relay changed */
  move: (peerWgKey: string) => void
  readonly closed: boolean
}

/**
 * createFakeTlsRelayClient hands out loopback endpoints with made-up ports (from 40000,
 * the same port again for the same peer) and carries nothing.
 */
export function createFakeTlsRelayClient (opts: { connected?: boolean } = {}): FakeTlsRelayClient {
  const open = new Map<string, string>()
  const released: string[] = []
  const handlers = new Set<(up: boolean) => void>()
  const movedHandlers = new Set<(peerWgKey: string) => void>()
  let connected = opts.connected ?? true
  let nextPort = 40000
  let closed = false
  return {
    open,
    released,
    get closed () { return closed },
    setConnected (up) {
      if (up === connected) return
      connected = up
      for (const h of handlers) h(up)
    },
    move (peerWgKey) {
      if (open.delete(peerWgKey)) released.push(peerWgKey)
      for (const h of movedHandlers) h(peerWgKey)
    },
    async endpoint (peerWgKey) {
      if (closed) throw new Error('the fake TLS relay client is closed')
      let ep = open.get(peerWgKey)
      if (ep === undefined) open.set(peerWgKey, ep = `127.0.0.1:${nextPort++}`)
      return ep
    },
    release (peerWgKey) {
      if (open.delete(peerWgKey)) released.push(peerWgKey)
    },
    connected: () => connected && !closed,
    onStateChange (h) {
      handlers.add(h)
      return () => { handlers.delete(h) }
    },
    onMoved (h) {
      movedHandlers.add(h)
      return () => { movedHandlers.delete(h) }
    },
    async close () { closed = true; open.clear() }
  }
}
