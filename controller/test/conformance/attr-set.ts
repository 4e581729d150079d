import type { NodeAttrs } from '@warren/protocol'
import { loadCategory } from './corpus.js'

/**
 * attr-set compares the attributes a node gets from the policy's nodeAttrs. Tailscale's
 * capture holds each node's whole capability map, most of which comes from the tailnet's
 * settings, not the policy (`default-auto-update`, `https://tailscale.com/cap/ssh`, ...).
 * BASELINE_ID is a record of the same topology whose policy has no nodeAttrs: what is in
 * its map is the tailnet's, so only the names a node has beyond it are the policy's.
 * An attribute the baseline already holds (file-sharing, is-admin) cannot be seen either
 * way, so names are compared above the baseline on both sides.
 */
const BASELINE_ID = 'nodeattrs-tailnet-magicdns-on'

/** DERIVED are capabilities Tailscale adds for an attribute the policy named: `funnel` brings its ports and a warning. */
const DERIVED: ReadonlyArray<{ name: RegExp, from: string }> = [
  { name: /^https:\/\/tailscale\.com\/cap\/(funnel-ports\?.*|warn-funnel-no-https)$/, from: 'funnel' }
]

export type CapMap = Record<string, unknown> | null | undefined

let baseline: Map<string, Set<string>> | undefined

/** baselineOf is the names the node (by hostname) has in the baseline record. */
function baselineOf (node: string): Set<string> {
  if (baseline === undefined) {
    const r = loadCategory('nodeattrs').find(x => x.id === BASELINE_ID)
    if (r?.nodes === null || r?.nodes === undefined) throw new Error(`the conformance corpus lacks its baseline record ${BASELINE_ID}`)
    baseline = new Map(Object.entries(r.nodes).map(([name, n]) => [name, new Set(Object.keys(n?.capMap ?? {}))]))
  }
  return baseline.get(node) ?? new Set()
}

/** policyNames are the names of a capability map beyond the baseline, without those derived from another. */
function policyNames (names: Iterable<string>, base: ReadonlySet<string>): string[] {
  const all = [...names].filter(n => !base.has(n))
  return all.filter(n => !DERIVED.some(d => d.name.test(n) && all.includes(d.from))).sort()
}

/** attrDifferences says how Warren's attributes for a node differ from Tailscale's capture (nothing when they agree). */
export function attrDifferences (node: string, captured: CapMap, warren: NodeAttrs): string[] {
  const base = baselineOf(node)
  const ts = policyNames(Object.keys(captured ?? {}), base)
  const w = policyNames(Object.keys(warren), base)
  return ts.join(' ') === w.join(' ') ? [] : [`attributes: tailscale gives [${ts.join(', ')}], warren gives [${w.join(', ')}]`]
}
