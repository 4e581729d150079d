import { postureHolds, type PostureAttrs, type PostureDef } from './posture.js'
import type { Policy, PolicyRule } from './types.js'

/**
 * A rule with postures matches a source only while the source's node meets one of them.
 * The engine matches by keys, so such a rule's source keys are `key|posture:NAME`, and a
 * node carries `key|posture:NAME` for each of its keys and each posture it meets: an
 * attribute change that changes what a node meets changes its keys, which the engine
 * treats like any other change of identity.
 */
const SEP = '|'

/** postureKey is the key of `key`'s members that meet `posture`. */
export function postureKey (key: string, posture: string): string {
  return `${key}${SEP}${posture}`
}

/** baseKey is the key a posture key was made from (the key itself for others). */
export function baseKey (key: string): string {
  const i = key.indexOf(SEP)
  return i < 0 ? key : key.slice(0, i)
}

/** rulePostures lists the postures a rule asks of its sources: its own srcPosture, else the policy's defaultSrcPosture. */
export function rulePostures (policy: Policy, rule: PolicyRule): string[] {
  return rule.srcPosture ?? policy.defaultSrcPosture ?? []
}

/** postureKeys adds to `keys` their posture keys for each posture the attributes meet. */
export function postureKeys (postures: ReadonlyMap<string, PostureDef>, keys: Set<string>, attrs: PostureAttrs | undefined): Set<string> {
  const met = [...postures].filter(([, def]) => postureHolds(def, attrs)).map(([name]) => name)
  if (met.length === 0) return keys
  const out = new Set(keys)
  for (const k of keys) for (const p of met) out.add(postureKey(k, p))
  return out
}
