import type { CapMap } from '@warren/protocol'
import { destinationReached, type CompiledPolicy, type Subject } from './compile-policy.js'

/** CapGrant is one grant with `app` that gives a source capabilities at a destination. */
export interface CapGrant {
  index: number
  line: number
  text: string
  caps: CapMap
}

/**
 * capGrants lists, in policy order, the grants whose capabilities `src` gets at `dst`
 * (the companion a grant implies, such as drive-sharer, counts as that grant).
 */
export function capGrants (cp: CompiledPolicy, src: Subject, dst: Subject): CapGrant[] {
  const out: CapGrant[] = []
  for (const r of cp.rules) {
    if (r.caps === undefined || !r.srcKeys.some(k => src.keys.has(k))) continue
    if (r.dsts.some(d => destinationReached(d, src, dst))) out.push({ index: r.index, line: r.line, text: r.text, caps: r.caps })
  }
  return out
}

