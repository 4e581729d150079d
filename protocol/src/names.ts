import { WarrenError } from './errors.js'

/** DEFAULT_DOMAIN is the MagicDNS domain when the controller is not told another. */
export const DEFAULT_DOMAIN = 'warren.internal'

/**
 * sanitizeHostname turns any hostname into a DNS-safe label: lowercase letters, digits
 * and inner hyphens, at most 63 characters. An empty result becomes `node`.
 */
export function sanitizeHostname (h: string): string {
  const label = h.toLowerCase().split('.')[0]!
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/-+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 63)
    .replace(/-+$/g, '')
  return label === '' ? 'node' : label
}

/** isDnsLabel says whether s is already a valid lowercase DNS label. */
export function isDnsLabel (s: string): boolean {
  return /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(s)
}

/**
 * looksLikeNodeId says whether s has the form of a node id (16 lowercase hex digits).
 * Node names may not: commands take an id or a name, and a name that reads as an id
 * could make a command meant for one node hit another.
 */
export function looksLikeNodeId (s: string): boolean {
  return /^[0-9a-f]{16}$/.test(s)
}

/** checkNodeName throws a clear error for a name that cannot be a MagicDNS label or reads as a node id. */
export function checkNodeName (s: string): void {
  if (!isDnsLabel(s)) {
    throw new WarrenError('bad_name', `node name '${s}' is not DNS-safe: use 1-63 lowercase letters, digits and inner hyphens (for example 'db-1')`, { field: 'name' })
  }
  if (looksLikeNodeId(s)) {
    throw new WarrenError('bad_name', `node name '${s}' looks like a node id (16 hex digits), which would make commands that take an id or a name ambiguous; pick a name that is not 16 hex digits (for example '${s.slice(0, 8)}-${s.slice(8)}')`, { field: 'name' })
  }
}

/** isTag says whether s is a tag such as `tag:server` (letters of either case: `tag:Server` is another tag). */
export function isTag (s: string): boolean {
  return /^tag:[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(s)
}

/** isDomain says whether s is a DNS domain such as `warren.internal`. */
export function isDomain (s: string): boolean {
  return s.length <= 200 && s.split('.').every(isDnsLabel) && s.includes('.')
}

/** parseDuration reads `30s`, `15m`, `24h`, `7d`, `1w` or a number of seconds into milliseconds. */
export function parseDuration (s: string, field = 'duration'): number {
  const m = /^(\d+)(s|m|h|d|w)?$/.exec(String(s).trim())
  if (m === null) {
    throw new WarrenError('bad_duration', `${field} '${s}' is not a duration: use a number with s, m, h, d or w (for example 90d or 24h)`, { field })
  }
  const n = Number(m[1])
  const unit = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 }[(m[2] ?? 's') as 's']
  return n * unit * 1000
}

/** MAGIC_DNS_IPV4 is where every node's MagicDNS resolver listens (as in Tailscale). */
export const MAGIC_DNS_IPV4 = '100.100.100.100'
/** MAGIC_DNS_IPV6 is the IPv6 twin of MAGIC_DNS_IPV4. */
export const MAGIC_DNS_IPV6 = 'fd7a:115c:a1e0::53'
/** MESH_IPV4_CIDR is the range mesh IPv4 addresses come from (CGNAT space). */
export const MESH_IPV4_CIDR = '100.64.0.0/10'
