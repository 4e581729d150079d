import type { LocalPeerStatus, LocalStatus, LocalWatchEvent } from '@warren/protocol'

/** ChangeReason says what made the daemon announce a change. */
export type ChangeReason = 'state' | 'map' | 'policy'

/** ChangeFeed lets the LocalAPI's watchers hear when the daemon's state may have changed. */
export interface ChangeFeed {
  notify: (reason: ChangeReason) => void
  subscribe: (listener: (reason: ChangeReason) => void) => () => void
}

/** createChangeFeed is a plain listener set; a listener that throws does not stop the others. */
export function createChangeFeed (): ChangeFeed {
  const listeners = new Set<(reason: ChangeReason) => void>()
  return {
    notify (reason) {
      for (const l of [...listeners]) {
        try { l(reason) } catch { /* a broken watcher is its own problem */ }
      }
    },
    subscribe (listener) {
      listeners.add(listener)
      return () => { listeners.delete(listener) }
    }
  }
}

/** PEER_FIELDS are the parts of a peer whose change is a `peer-changed` event (traffic counters and handshakes are not). */
const PEER_FIELDS = ['name', 'fqdn', 'user', 'tags', 'ipv4', 'ipv6', 'wgKey', 'path'] as const

const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b)
const pathKind = (p: LocalPeerStatus): unknown => p.path === undefined ? undefined : { kind: p.path.kind, endpoint: p.path.endpoint, relay: p.path.relay }

/**
 * diffStatus lists the watch events between two status snapshots, in a stable order:
 * state, removed peers, added peers, then per remaining peer up/down and changes.
 */
export function diffStatus (prev: LocalStatus, next: LocalStatus, time: string): LocalWatchEvent[] {
  const out: LocalWatchEvent[] = []
  if (prev.backendState !== next.backendState) out.push({ type: 'state', time, backendState: next.backendState })
  const before = new Map(prev.peers.map(p => [p.id, p]))
  const after = new Map(next.peers.map(p => [p.id, p]))
  for (const [id, p] of before) if (!after.has(id)) out.push({ type: 'peer-removed', time, peer: p })
  for (const [id, p] of after) if (!before.has(id)) out.push({ type: 'peer-added', time, peer: p })
  for (const [id, p] of after) {
    const old = before.get(id)
    if (old === undefined) continue
    if (old.online !== p.online) out.push({ type: p.online ? 'peer-up' : 'peer-down', time, peer: p })
    const fields = PEER_FIELDS.filter(f => f === 'path' ? !same(pathKind(old), pathKind(p)) : !same(old[f], p[f]))
    if (fields.length > 0) out.push({ type: 'peer-changed', time, peer: p, fields: [...fields] })
  }
  return out
}
