import { WarrenError, type MachineKeyPair, type RelayInfo } from '@warren/protocol'
import { createControllerTransport } from '@warren/sdk/transport'
import { createTlsRelayClient, type TlsRelayClientInit, type TlsRelayClientLogger, type TlsRelayClientStats } from './tls-relay-client.js'
import { tlsRelayTargets, chooseTlsRelay, type TlsRelayTarget } from './tls-relay-choice.js'
import type { TlsRelayClient } from './types.js'
import type { RelayIdentity } from './path-manager.js'

/** DaemonTlsRelayInit is what the daemon knows when its path selection starts. */
export interface DaemonTlsRelayInit {
  /** the controller the node joined (its URL and certificate pin): the embedded TLS relay is on its HTTPS port */
  controller: { url: string, fingerprint?: string }
  /** the relays of the map the daemon has now */
  relays: readonly RelayInfo[]
  machineKey: MachineKeyPair
  /** this node's WireGuard public key, half of every pair's relay choice */
  wgKey: string
  wgPort: number
  logger?: TlsRelayClientLogger
  /** openClient makes the client of one relay (default: createTlsRelayClient over a transport pinned to the target); tests pass fakes */
  openClient?: (target: TlsRelayTarget, init: Pick<TlsRelayClientInit, 'machineKey' | 'wgPort' | 'logger'>) => RelayClient
}

/** RelayClient is the client of one TLS relay, as the daemon's client drives it. */
export type RelayClient = TlsRelayClient & { stats?: () => TlsRelayClientStats }

/** DaemonTlsRelay is the daemon's TLS relay client, which follows the map's relays. */
export interface DaemonTlsRelay extends TlsRelayClient, RelayIdentity {
  /** stats sums what went through every relay's connection */
  stats: () => TlsRelayClientStats
  /** followMap connects to the relays a new map lists, drops those it no longer lists, and moves the pairs whose relay changed */
  followMap: (relays: readonly RelayInfo[]) => void
}

interface Connection { target: TlsRelayTarget, client: RelayClient }

/** openPinned is the default openClient: createTlsRelayClient over a transport pinned to the relay, closed with it. */
function openPinned (target: TlsRelayTarget, init: Pick<TlsRelayClientInit, 'machineKey' | 'wgPort' | 'logger'>): RelayClient {
  const transport = createControllerTransport({ url: target.url, ...(target.fingerprint !== undefined ? { fingerprint: target.fingerprint } : {}) })
  const client = createTlsRelayClient({ ...init, transport })
  return { ...client, close: async () => { await client.close(); transport.close() } }
}

/**
 * createDaemonTlsRelay connects to every TLS relay the map lists (so a peer finds this
 * node on whichever relay their pair uses) and carries each peer over the relay
 * chooseTlsRelay picks for the pair, which the peer picks too. When the map's relays
 * change, the pairs whose relay changed move: the old loopback endpoint is released and
 * onMoved tells path selection to ask for the new one.
 */
export function createDaemonTlsRelay (init: DaemonTlsRelayInit): DaemonTlsRelay {
  const log = init.logger
  const connections = new Map<string, Connection>()
  /** assigned maps each peer with an endpoint (or one being opened) to its relay's id */
  const assigned = new Map<string, string>()
  const stateHandlers = new Set<(connected: boolean) => void>()
  const movedHandlers = new Set<(peerWgKey: string) => void>()
  let targets: TlsRelayTarget[] = []
  let closed = false

  function follow (relays: readonly RelayInfo[]): void {
    targets = tlsRelayTargets(relays, init.controller)
    const want = new Map(targets.map(t => [t.id, t]))
    // A relay that left the map, or moved to another URL or certificate, is dropped.
    const dropped = [...connections.values()].filter(c => {
      const t = want.get(c.target.id)
      return t === undefined || t.url !== c.target.url || t.fingerprint !== c.target.fingerprint
    })
    for (const c of dropped) connections.delete(c.target.id)
    // Pairs whose relay was dropped or now loses to another move; the others stay.
    for (const [peer, id] of [...assigned]) {
      if (connections.has(id) && chooseTlsRelay(targets, init.wgKey, peer).id === id) continue
      connections.get(id)?.client.release(peer)
      assigned.delete(peer)
      for (const h of movedHandlers) h(peer)
    }
    for (const c of dropped) {
      log?.info({ relay: c.target.id }, 'a TLS relay left the map or moved; disconnecting from it')
      void c.client.close()
    }
    for (const t of targets) {
      if (connections.has(t.id)) continue
      const client = (init.openClient ?? openPinned)(t, { machineKey: init.machineKey, wgPort: init.wgPort, ...(log !== undefined ? { logger: log } : {}) })
      client.onStateChange(up => { for (const h of stateHandlers) h(up) })
      connections.set(t.id, { target: t, client })
    }
  }

  follow(init.relays)

  const clientOf = (peer: string): RelayClient | undefined => {
    const id = assigned.get(peer)
    return id === undefined ? undefined : connections.get(id)?.client
  }

  return {
    async endpoint (peerWgKey) {
      for (;;) {
        const { id } = chooseTlsRelay(targets, init.wgKey, peerWgKey)
        const c = connections.get(id)
        if (closed || c === undefined) throw new WarrenError('closed', 'the TLS relay client is closed')
        assigned.set(peerWgKey, id)
        try {
          const ep = await c.client.endpoint(peerWgKey)
          if (assigned.get(peerWgKey) === id) return ep
          // A map moved the pair while the endpoint opened: give it back and ask the new relay.
          c.client.release(peerWgKey)
        } catch (e) {
          if (assigned.get(peerWgKey) === id) throw e
        }
      }
    },
    release (peerWgKey) {
      clientOf(peerWgKey)?.release(peerWgKey)
      assigned.delete(peerWgKey)
    },
    connected (peerWgKey) {
      if (peerWgKey !== undefined) return clientOf(peerWgKey)?.connected() ?? false
      return [...connections.values()].some(c => c.client.connected())
    },
    onStateChange (h) {
      stateHandlers.add(h)
      return () => { stateHandlers.delete(h) }
    },
    onMoved (h) {
      movedHandlers.add(h)
      return () => { movedHandlers.delete(h) }
    },
    relayId: peerWgKey => assigned.get(peerWgKey),
    stats: () => sumStats([...connections.values()].flatMap(c => c.client.stats !== undefined ? [c.client.stats()] : [])),
    followMap (relays) { follow(relays) },
    async close () {
      closed = true
      stateHandlers.clear()
      movedHandlers.clear()
      const all = [...connections.values()]
      connections.clear()
      assigned.clear()
      await Promise.allSettled(all.map(async c => { await c.client.close() }))
    }
  }
}

/** sumStats adds up the counters of several relay connections; the rest is the first one's. */
function sumStats (all: readonly TlsRelayClientStats[]): TlsRelayClientStats {
  const total: TlsRelayClientStats = { ...all[0], connects: 0, sent: 0, sendDropped: 0, received: 0, receiveDropped: 0, loopbackSends: 0, oversize: 0 }
  for (const s of all) {
    for (const k of ['connects', 'sent', 'sendDropped', 'received', 'receiveDropped', 'loopbackSends', 'oversize'] as const) total[k] += s[k]
  }
  return total
}
