import { PROTOCOL_VERSION } from './version.js'
import type { FilterRule, MapDelta, NatConfig, Netmap, Node, Peer, RelayInfo, ServerMessage } from './messages.js'

/**
 * Version-aware encoding. Warren's schemas are closed (an unknown field is an error), so
 * a side that speaks an older protocol version must never be sent a field or message
 * that came later. Each side announces its version (the controller in its challenge and
 * in GET /v1/machine/key, a node in its registration and map hello) and both speak the
 * lower one; these functions turn what the newer side would send into what the older
 * one knows.
 */

/** ROUTES_AND_PINS_VERSION added subnet routes, TLS relay pins, call-me-maybe, capability rules and node attributes (see PROTOCOL_VERSION's history). */
export const ROUTES_AND_PINS_VERSION = 2
/** DUAL_STACK_RELAY_VERSION added a kernel relay's IPv6 endpoint (RelayInfo.udp6). */
export const DUAL_STACK_RELAY_VERSION = 3

/** negotiateVersion is the version two sides speak: the lower of the two. */
export function negotiateVersion (theirs: number): number {
  return Math.min(PROTOCOL_VERSION, theirs)
}

/**
 * nodeForVersion leaves out a node's route fields, policy attributes and posture attributes
 * for a version before them, and writes its tags in lowercase (version 1 knew no capitals).
 */
export function nodeForVersion (n: Node, version: number): Node {
  if (version >= ROUTES_AND_PINS_VERSION) return n
  const { advertisedRoutes: _a, approvedRoutes: _b, attrs: _c, primaryRoutes: _d, postureAttrs: _e, ...rest } = n
  return { ...rest, tags: lowerTags(n.tags) }
}

/** lowerTags are tags as version 1 wrote them: lowercase (`tag:Server` reads as `tag:server` there, a name shown, never a rule). */
function lowerTags (tags: string[]): string[] {
  return tags.some(t => t !== t.toLowerCase()) ? tags.map(t => t.toLowerCase()) : tags
}

function peerForVersion (p: Peer, version: number): Peer {
  if (version >= ROUTES_AND_PINS_VERSION) return p
  const { routes: _r, primaryRoutes: _p, ...rest } = p
  return { ...rest, tags: lowerTags(p.tags) }
}

/**
 * filterForVersion leaves out the subnet router's forward rules (`dsts`) for a version
 * before them (an older node would read such a rule as traffic allowed to itself), and
 * the capability rules (`caps`), which let no traffic in and which it cannot read.
 */
function filterForVersion (rules: FilterRule[], version: number): FilterRule[] {
  return version >= ROUTES_AND_PINS_VERSION ? rules : rules.filter(r => r.dsts === undefined && r.caps === undefined)
}

/**
 * relayForVersion is a relay as a node of `version` knows it, or undefined when it has
 * nothing left for that node. Before version 3 the IPv6 endpoint (`udp6`) goes: it takes
 * the place of `udp` when the relay has no other. Before pins, a standalone TLS relay's
 * URL goes (it comes with a pin an older node cannot read, and it would pin the URL with
 * the controller's certificate).
 */
function relayForVersion (r: RelayInfo, version: number): RelayInfo | undefined {
  let out = r
  if (version < DUAL_STACK_RELAY_VERSION && r.udp6 !== undefined) {
    const { udp6, ...rest } = r
    out = { ...rest, udp: rest.udp ?? udp6 }
  }
  if (version < ROUTES_AND_PINS_VERSION && out.tlsFingerprint !== undefined) {
    const { tls: _t, tlsFingerprint: _f, ...rest } = out
    return rest.udp === undefined ? undefined : rest
  }
  return out
}

function natForVersion (nat: NatConfig, version: number): NatConfig {
  if (version >= DUAL_STACK_RELAY_VERSION) return nat
  return { ...nat, relays: nat.relays.flatMap(r => relayForVersion(r, version) ?? []) }
}

/** netmapForVersion is a full map as a node of `version` can read it. */
export function netmapForVersion (m: Netmap, version: number): Netmap {
  if (version >= DUAL_STACK_RELAY_VERSION) return m
  return {
    ...m,
    self: nodeForVersion(m.self, version),
    peers: m.peers.map(p => peerForVersion(p, version)),
    filter: filterForVersion(m.filter, version),
    ...(m.nat !== undefined ? { nat: natForVersion(m.nat, version) } : {})
  }
}

/** deltaForVersion is a delta as a node of `version` can read it. */
export function deltaForVersion (d: MapDelta, version: number): MapDelta {
  if (version >= DUAL_STACK_RELAY_VERSION) return d
  return {
    ...d,
    ...(d.self !== undefined ? { self: nodeForVersion(d.self, version) } : {}),
    ...(d.peersChanged !== undefined ? { peersChanged: d.peersChanged.map(p => peerForVersion(p, version)) } : {}),
    ...(d.filter !== undefined ? { filter: filterForVersion(d.filter, version) } : {}),
    ...(d.nat !== undefined ? { nat: natForVersion(d.nat, version) } : {})
  }
}

/**
 * serverMessageForVersion is a map-session message as a node of `version` can read it,
 * or undefined for one it does not know at all (call-me-maybe before version 2: the
 * older node does not answer bursts early, and finds its path on its own schedule).
 */
export function serverMessageForVersion (msg: ServerMessage, version: number): ServerMessage | undefined {
  if (version >= DUAL_STACK_RELAY_VERSION) return msg
  switch (msg.type) {
    case 'map': return { ...msg, netmap: netmapForVersion(msg.netmap, version) }
    case 'delta': return deltaForVersion(msg, version)
    case 'call-me-maybe': return version >= ROUTES_AND_PINS_VERSION ? msg : undefined
    default: return msg
  }
}
