import { protocolHasPorts } from '@warren/protocol'
import { checkCompiled, compilePolicy, protoNumber, resolveSubject, type CheckOptions } from './compile-policy.js'
import { capGrants } from './cap-grants.js'
import { PROTO_NAMES } from './parse.js'
import { routeNote, routeNoteText } from './route-explain.js'
import type { Policy, PortRange } from './types.js'

/** protoName is the usual name of an IANA protocol number (`tcp` for 6), or the number. */
export function protoName (n: number): string {
  if (n === 1) return 'icmp'
  if (n === 58) return 'icmpv6'
  const name = Object.entries(PROTO_NAMES).find(([, v]) => v.length === 1 && v[0] === n)
  return name === undefined ? String(n) : name[0]
}

/** portsText shows ranges as a person writes them: `*`, `22`, `80,443`, `8000-8100`. */
export function portsText (ranges: readonly PortRange[]): string {
  if (ranges.length === 1 && ranges[0]!.first === 0 && ranges[0]!.last === 65535) return '*'
  return ranges.map(r => r.first === r.last ? `${r.first}` : `${r.first}-${r.last}`).join(',')
}

/** flowText names a flow as explain and test failures show it. */
export function flowText (src: string, dst: string, proto: number, port: number): string {
  return protocolHasPorts(proto) ? `${src} -> ${dst}:${port}/${protoName(proto)}` : `${src} -> ${dst} over ${protoName(proto)}`
}

/** ExplainResult names the rules that allow a flow, or says that nothing does, and the capabilities the source gets there. */
export interface ExplainResult {
  allowed: boolean
  rules: Array<{ index: number, line: number, text: string }>
  /** caps: each capability `src` gets at `dst` (whatever the port), with the grant that gives it, in grant order */
  caps: ExplainCap[]
  message: string
}

/** ExplainCap is one capability one grant gives. */
export interface ExplainCap { cap: string, values: unknown[], index: number, line: number, text: string }

/**
 * explain tells why a flow is allowed (every rule that allows it, with its line and
 * text) or that nothing allows it. `src` and `dst` are identities as for `check`; with
 * `opts.nodes`, node names and node IPs work too. proto defaults to TCP.
 */
export function explain (policy: Policy, src: string, dst: string, port: number, proto?: string | number, opts: CheckOptions = {}): ExplainResult {
  const cp = compilePolicy(policy, opts.users ?? [])
  const p = protoNumber(proto)
  const srcSubject = resolveSubject(cp, src, opts.nodes)
  const dstSubject = resolveSubject(cp, dst, opts.nodes)
  const result = checkCompiled(cp, srcSubject, dstSubject, p, port)
  const flow = flowText(src, dst, p, port)
  const caps = capGrants(cp, srcSubject, dstSubject).flatMap(g =>
    Object.entries(g.caps).map(([cap, values]) => ({ cap, values, index: g.index, line: g.line, text: g.text })))
  const capLines = caps.length === 0 ? '' : `\n${src} gets these capabilities at ${dst}:\n${caps.map(c => `  ${c.cap} ${JSON.stringify(c.values)} from ${ruleText(c)}`).join('\n')}`
  if (!result.allowed) {
    const what = protocolHasPorts(p) ? `${dst}:${port}/${protoName(p)}` : `${dst} over ${protoName(p)}`
    return { allowed: false, rules: [], caps, message: `nothing allows ${src} to reach ${what}${capLines}` }
  }
  const rules = result.rules.map(r => ({ ...r, text: cp.rules.find(c => c.index === r.index)!.text }))
  const lines = rules.map(r => `  ${ruleText(r)}`)
  const note = opts.nodes === undefined ? undefined : routeNote(cp, srcSubject, dstSubject, p, port, opts.nodes)
  if (note !== undefined) lines.push(`  ${routeNoteText(note, dst)}`)
  return { allowed: true, rules, caps, message: `${flow} is allowed by:\n${lines.join('\n')}${capLines}` }
}

/** ruleText names a rule by number and line, then its text. */
function ruleText (r: { index: number, line: number, text: string }): string {
  return `rule ${r.index + 1} (line ${r.line}): ${r.text}`
}
