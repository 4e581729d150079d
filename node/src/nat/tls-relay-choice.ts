import { createHash } from 'node:crypto'
import type { RelayInfo } from '@warren/protocol'

/** EMBEDDED_RELAY_ID is the relay id of the controller's own relays, as maps list them. */
export const EMBEDDED_RELAY_ID = 'controller'

/** TlsRelayTarget is one TLS relay a daemon may use: its id (for status), URL and certificate pin. */
export interface TlsRelayTarget {
  id: string
  url: string
  fingerprint?: string
}

/**
 * tlsRelayTargets lists the TLS relays of a map, sorted by id. A relay with a certificate
 * pin of its own is a standalone one, reached at its URL; one without is the
 * controller's, reached (and pinned) as the node reached the controller. With none
 * listed it is the controller's alone, on the HTTPS port the node joined.
 */
export function tlsRelayTargets (relays: readonly RelayInfo[], controller: { url: string, fingerprint?: string }): TlsRelayTarget[] {
  const listed = relays.filter(r => r.tls !== undefined).sort((x, y) => x.id < y.id ? -1 : x.id > y.id ? 1 : 0)
  if (listed.length === 0) return [{ id: EMBEDDED_RELAY_ID, ...controller }]
  return listed.map(r => r.tlsFingerprint !== undefined ? { id: r.id, url: r.tls!, fingerprint: r.tlsFingerprint } : { id: r.id, ...controller })
}

/**
 * chooseTlsRelay picks the TLS relay of a pair of nodes by rendezvous hashing: each
 * target scores SHA-256(both WireGuard keys in sorted order, target id) and the highest
 * wins. Both nodes see the same targets in their maps, so both pick the same relay
 * without asking anyone; pairs spread evenly over the relays; and when a relay leaves
 * the maps only the pairs that were on it move (the others keep their winner).
 */
export function chooseTlsRelay<T extends { id: string }> (targets: readonly T[], keyA: string, keyB: string): T {
  if (targets.length === 0) throw new Error('chooseTlsRelay needs at least one TLS relay')
  const pair = keyA < keyB ? `${keyA}\n${keyB}` : `${keyB}\n${keyA}`
  let best: T | undefined
  let bestScore = ''
  for (const t of targets) {
    const score = createHash('sha256').update(`${pair}\n${t.id}`).digest('hex')
    if (best === undefined || score > bestScore) {
      best = t
      bestScore = score
    }
  }
  return best!
}
