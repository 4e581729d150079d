/**
 * kernel-table reads Warren's table back from `nft -j -n list table`, so the firewall can
 * tell whether the kernel still holds what it applied.
 */
import { formatAddrRange, parseSource, type AddrRange } from './addresses.js'
import { RULESET_MARKER } from './nft-render.js'
import { ROUTES_COMMENT_PREFIX } from './route-rules.js'
import { emptySets, SET_NAMES, setIsV6, type SetElements, type SetName } from './set-elements.js'
import { parseSharedPortComment, type EgressMapName } from './shared-port-rules.js'
import type { SharedPortRules } from './types.js'
import type { RejectLimit } from './flow-chains.js'

/**
 * KernelTable is what a read-back of our table says: the judged interface, the elements,
 * the shared-port rules, the limit of the rule that rejects forbidden new flows, and the
 * digest of a subnet router's part (route-rules.ts).
 */
export interface KernelTable { interfaceName?: string, marked: boolean, sets: SetElements, sharedPort?: SharedPortRules, rejectLimit?: RejectLimit, routesDigest?: string }

/** ICMPX_ADMIN_PROHIBITED is how `nft -j -n` writes `reject with icmpx admin-prohibited`. */
const ICMPX_ADMIN_PROHIBITED = 3

/** rejectLimitOf reads `limit rate R/second burst B packets reject with icmpx admin-prohibited`, undefined for any other rule. */
function rejectLimitOf (expr: unknown): RejectLimit | undefined {
  if (!Array.isArray(expr) || expr.length !== 2) return undefined
  const [limit, reject] = expr as Array<Record<string, any>>
  const l = limit?.limit
  if (l?.per !== 'second' || l.unit !== undefined || typeof l.rate !== 'number' || typeof l.burst !== 'number') return undefined
  if (reject?.reject?.type !== 'icmpx' || reject.reject.expr !== ICMPX_ADMIN_PROHIBITED) return undefined
  return { rate: l.rate, burst: l.burst }
}

type JsonValue = string | number | { prefix?: { addr: string, len: number }, range?: [JsonValue, JsonValue] }

function jsonAddr (v: JsonValue, v6: boolean): AddrRange {
  if (typeof v === 'string') return parseSource(v, 'kernel element')[0]!
  if (v !== null && typeof v === 'object' && v.prefix !== undefined) return parseSource(`${v.prefix.addr}/${v.prefix.len}`, 'kernel element')[0]!
  if (v !== null && typeof v === 'object' && v.range !== undefined) {
    const lo = jsonAddr(v.range[0], v6)
    const hi = jsonAddr(v.range[1], v6)
    return { v6: lo.v6, lo: lo.lo, hi: hi.hi }
  }
  throw new Error(`unexpected address in kernel set element: ${JSON.stringify(v)}`)
}

function jsonPort (v: JsonValue): string {
  if (typeof v === 'number') return String(v)
  if (v !== null && typeof v === 'object' && v.range !== undefined) {
    const [a, b] = v.range
    return a === b ? String(a) : `${String(a)}-${String(b)}`
  }
  throw new Error(`unexpected port in kernel set element: ${JSON.stringify(v)}`)
}

/**
 * parseKernelTable reads `nft -j -n list table inet <name>` output into canonical elements,
 * so they compare equal to compileFilter's output when the kernel holds what we applied.
 */
export function parseKernelTable (json: string): KernelTable {
  const doc = JSON.parse(json) as { nftables?: Array<Record<string, any>> }
  const out: KernelTable = { marked: false, sets: emptySets() }
  const egress: Partial<Record<EgressMapName, Record<string, string>>> = {}
  let shared: ReturnType<typeof parseSharedPortComment>
  for (const item of doc.nftables ?? []) {
    if (item.map !== undefined && (item.map.name === 'egress4' || item.map.name === 'egress6')) {
      const map: Record<string, string> = egress[item.map.name as EgressMapName] = {}
      for (const pair of item.map.elem ?? []) {
        if (!Array.isArray(pair) || typeof pair[0] !== 'string' || typeof pair[1] !== 'string') throw new Error(`unexpected element in map ${String(item.map.name)}: ${JSON.stringify(pair)}`)
        map[pair[0]] = pair[1]
      }
    }
    if (item.rule !== undefined && item.rule.chain === 'sharedin' && typeof item.rule.comment === 'string') {
      shared = parseSharedPortComment(item.rule.comment) ?? shared
    }
    if (item.set !== undefined && (SET_NAMES as readonly string[]).includes(item.set.name)) {
      const name = item.set.name as SetName
      const v6 = setIsV6(name)
      const texts: string[] = []
      for (const raw of item.set.elem ?? []) {
        const el = raw?.elem?.val ?? raw
        const concat = el?.concat as JsonValue[] | undefined
        if (!Array.isArray(concat)) throw new Error(`unexpected element in set ${name}: ${JSON.stringify(raw)}`)
        const a = jsonAddr(concat[0]!, v6)
        const fields = [formatAddrRange(a.v6, a.lo, a.hi), String(concat[1])]
        if (concat.length === 3) fields.push(jsonPort(concat[2]!))
        texts.push(fields.join(' . '))
      }
      out.sets[name] = texts
    }
    if (item.rule !== undefined && item.rule.chain === 'forward' && typeof item.rule.comment === 'string' && item.rule.comment.startsWith(ROUTES_COMMENT_PREFIX)) {
      out.routesDigest = item.rule.comment.slice(ROUTES_COMMENT_PREFIX.length)
    }
    if (item.rule !== undefined && item.rule.chain === 'refuse') out.rejectLimit = rejectLimitOf(item.rule.expr) ?? out.rejectLimit
    if (item.rule !== undefined && item.rule.chain === 'input') {
      if (item.rule.comment === RULESET_MARKER) out.marked = true
      for (const e of item.rule.expr ?? []) {
        if (e?.match?.left?.meta?.key === 'iifname' && typeof e.match.right === 'string') out.interfaceName = e.match.right
      }
    }
  }
  if (shared !== undefined && egress.egress4 !== undefined && (shared.controlAddress6 === undefined) === (egress.egress6 === undefined)) {
    out.sharedPort = { ...shared, egress: egress.egress4, ...(egress.egress6 !== undefined ? { egress6: egress.egress6 } : {}) }
  }
  return out
}
