import { checkCompiled, SELF_KEY, type CheckResult, type CompiledPolicy, type Subject } from './compile-policy.js'

/** CheckFlow answers checkCompiled for one flow. */
export type CheckFlow = (src: Subject, dst: Subject, proto: number, port: number) => CheckResult

/**
 * createCheckMemo is checkCompiled that answers once per kind of source: sources that
 * match the same keys the rules' sources name, with addresses of the same families (and
 * the same user, where autogroup:self tells users apart), get the same answer. So a test
 * from a group of 35,000 members evaluates the rules once per destination, proto and
 * port, not once per member.
 */
export function createCheckMemo (cp: CompiledPolicy): CheckFlow {
  const srcNamed = new Set(cp.rules.flatMap(r => r.srcKeys))
  const self = cp.rules.some(r => r.dsts.some(d => d.key === SELF_KEY))
  const byDst = new WeakMap<Subject, Map<string, CheckResult>>()
  return (src, dst, proto, port) => {
    let memo = byDst.get(dst)
    if (memo === undefined) { memo = new Map(); byDst.set(dst, memo) }
    const keys = [...src.keys].filter(k => srcNamed.has(k)).sort().join(' ')
    const families = [...new Set(src.addrs.map(a => a.family))].sort().join(',')
    const user = self && dst.user !== undefined ? src.user ?? '' : ''
    const id = `${proto}/${port}|${keys}|${families}|${user}`
    let result = memo.get(id)
    if (result === undefined) { result = checkCompiled(cp, src, dst, proto, port); memo.set(id, result) }
    return result
  }
}
