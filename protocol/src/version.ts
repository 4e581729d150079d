import { WarrenError } from './errors.js'

/**
 * PROTOCOL_VERSION is the one integer that says which wire protocol this build speaks
 * between CLI, daemon and controller. Bump it on any change an older side could not
 * parse (the schemas are closed), add a line, and teach compat.ts to leave the change
 * out for the older version: both sides speak the lower of their two versions.
 *
 * History:
 *   1 (2026-11-24): first version: signed registration, challenge-signed map session,
 *                   full map then sequenced deltas, per-node inbound filter.
 *   2 (2026-12-07): subnet routes (Node.advertisedRoutes/approvedRoutes, Peer.routes and
 *                   primaryRoutes, Node.primaryRoutes, FilterRule.dsts), grants' capabilities
 *                   (FilterRule.caps, LocalWhoisResponse.capabilities), nodeAttrs (Node.attrs), device
 *                   postures (Node.postureAttrs, MapHello.attrs), user roles, tags with
 *                   capitals (tag:Server; lowercased for version 1), standalone TLS relays with their
 *                   certificate pin (RelayInfo.tlsFingerprint), call-me-maybe, netcheck
 *                   over IPv6 (LocalNetcheck.ipv6); nodes and relays answer an older
 *                   peer's challenge with its version.
 *   3 (2026-12-07): dual-stack kernel relays: RelayInfo.udp6 and RelayLinkHello.udp6.
 */
export const PROTOCOL_VERSION: number = 3

/** MIN_PROTOCOL_VERSION is the oldest version a peer may speak and still be served. */
export const MIN_PROTOCOL_VERSION: number = 1

/** checkProtocolVersion throws a clear error when a peer speaks a version we cannot serve. */
export function checkProtocolVersion (theirs: number, who = 'peer'): void {
  if (!Number.isInteger(theirs) || theirs < MIN_PROTOCOL_VERSION || theirs > PROTOCOL_VERSION) {
    throw new WarrenError('protocol_version',
      `${who} speaks Warren protocol version ${theirs}, but this build speaks ${MIN_PROTOCOL_VERSION === PROTOCOL_VERSION ? PROTOCOL_VERSION : `${MIN_PROTOCOL_VERSION}-${PROTOCOL_VERSION}`}; ` +
      'upgrade the older side so both run the same Warren release')
  }
}
