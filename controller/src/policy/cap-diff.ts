import { mergeCaps, type CapMap, type FilterRule } from '@warren/protocol'
import { capGrants } from './cap-grants.js'
import type { CompiledPolicy, Subject } from './compile-policy.js'

/**
 * CapChange is one capability a source gains, loses or holds with other values at a
 * destination, as `diff` shows it: the values before (absent when gained) and after
 * (absent when lost).
 */
export interface CapChange {
  kind: 'identity' | 'node'
  src: string
  dst: string
  cap: string
  change: 'gained' | 'lost' | 'changed'
  before?: unknown[]
  after?: unknown[]
}

/** capsBetween is every capability `src` gets at `dst` by the policy, values in grant order. */
export function capsBetween (cp: CompiledPolicy, src: Subject, dst: Subject): CapMap {
  return mergeCaps(capGrants(cp, src, dst).map(g => g.caps))
}

/** capChanges compares what one source holds at one destination before and after. */
export function capChanges (kind: CapChange['kind'], src: string, dst: string, before: CapMap, after: CapMap): CapChange[] {
  const out: CapChange[] = []
  for (const cap of new Set([...Object.keys(before), ...Object.keys(after)])) {
    const a = before[cap]
    const b = after[cap]
    if (a === undefined) out.push({ kind, src, dst, cap, change: 'gained', after: b! })
    else if (b === undefined) out.push({ kind, src, dst, cap, change: 'lost', before: a })
    else if (JSON.stringify(a) !== JSON.stringify(b)) out.push({ kind, src, dst, cap, change: 'changed', before: a, after: b })
  }
  return out
}

/**
 * capsBySource reads the capability rules of a node's filter by source name (`label` names
 * an address range): what each source holds on the node. A rule that names a source by
 * several ranges (IPv4 and IPv6) gives its values once, as the node's whois does.
 */
export function capsBySource (filter: readonly FilterRule[], label: (src: string) => string): Map<string, CapMap> {
  const parts = new Map<string, CapMap[]>()
  for (const rule of filter) {
    if (rule.caps === undefined) continue
    for (const name of new Set(rule.srcs.map(label))) parts.set(name, [...(parts.get(name) ?? []), rule.caps])
  }
  return new Map([...parts].map(([name, maps]) => [name, mergeCaps(maps)]))
}

/** sortCapChanges orders changes by view, source, destination and capability, as diff lists them. */
export function sortCapChanges (rows: CapChange[]): CapChange[] {
  return rows.sort((x, y) => x.kind.localeCompare(y.kind) || x.src.localeCompare(y.src) || x.dst.localeCompare(y.dst) || x.cap.localeCompare(y.cap))
}
