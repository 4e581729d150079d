/** Filters shared by the firewall tests. */
import type { FilterRule } from '@warren/protocol'

/** peers makes a filter where each of n peers may reach two TCP ports, with gaps so nothing merges. */
export function peers (n: number, skip?: number): FilterRule[] {
  const out: FilterRule[] = []
  for (let i = 0; i < n; i++) {
    if (i === skip) continue
    out.push({ srcs: [`100.64.${i >> 7}.${(i & 127) * 2}`], protos: [6], ports: [{ first: 22, last: 22 }, { first: 8000 + i, last: 8000 + i }] })
  }
  return out
}
