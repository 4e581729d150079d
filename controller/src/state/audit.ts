import type { AuditEntry } from '@warren/protocol'

/**
 * listAudit returns up to `limit` entries with seq > `after`, oldest first (default: the
 * newest 100). `entries` are in seq order, so `after` is found by binary search.
 */
export function listAudit (entries: readonly AuditEntry[], { limit = 100, after }: { limit?: number, after?: number } = {}): AuditEntry[] {
  if (after === undefined) return entries.slice(Math.max(0, entries.length - limit))
  let lo = 0
  let hi = entries.length
  while (lo < hi) {
    const mid = (lo + hi) >> 1
    if (entries[mid]!.seq <= after) lo = mid + 1
    else hi = mid
  }
  return entries.slice(lo, lo + limit)
}
