import { parseTree } from 'jsonc-parser'
import { compileSshPolicy, createPolicyEngine, validatePolicy, type Policy, type PolicyError, type PolicyNode, type PolicyUser } from '../../src/policy/index.js'
import { accessDifferences, tailscaleAccess, warrenAccess } from './access-set.js'
import { capDifferences, tailscaleCaps, warrenCaps } from './cap-set.js'
import { attrDifferences } from './attr-set.js'
import { policyText, type Category, type CorpusRecord } from './corpus.js'
import { KNOWN_DIFFERENCES } from './known-differences.js'
import { sshDifferences } from './ssh-rules.js'
import { exitSpans, tailscaleAccessWithin, tailscaleRoutedAccess, warrenAccessWithin, warrenRoutedAccess } from './routed-access.js'

/**
 * The conformance runner holds Warren's policy engine to Tailscale's answers, one corpus
 * record at a time: Warren must accept exactly the policies Tailscale accepted, and for
 * those, every node's compiled filter must let in the same (source, destination,
 * protocol, port) tuples as Tailscale's, and for nodeAttrs give each node the same
 * attributes. A record that needs a feature Warren does not have yet is "not yet
 * applicable", with the feature named, rather than skipped.
 */

export type Verdict = 'agree' | 'disagree' | 'pending' | 'listed'

export interface CaseResult {
  id: string
  verdict: Verdict
  /** for `pending`, the feature it waits for; for `disagree`, what differs (first lines); for `listed`, why Warren differs */
  reason: string
  details: string[]
}

/**
 * PendingFeature is a part of Tailscale's policy language that later work adds to Warren.
 * A refusal that names only such parts is "not yet applicable".
 */
interface PendingFeature { reason: string, section?: string, error?: RegExp }

const PENDING: PendingFeature[] = [
]

interface Span { key: string, start: number, end: number }

function topLevelSpans (text: string): Span[] {
  const root = parseTree(text, [], { allowTrailingComma: true })
  return (root?.children ?? []).map(prop => ({ key: String(prop.children?.[0]?.value ?? '').toLowerCase(), start: prop.offset, end: prop.offset + prop.length }))
}

function offsetOf (text: string, e: PolicyError): number {
  let offset = 0
  for (let line = 1; line < e.line; line++) offset = text.indexOf('\n', offset) + 1
  return offset + e.column - 1
}

/** pendingFor finds the pending feature an error belongs to, if any. */
function pendingFor (text: string, spans: Span[], e: PolicyError): PendingFeature | undefined {
  const at = offsetOf(text, e)
  const section = spans.find(s => at >= s.start && at < s.end)?.key
  // sshTests refuse every autogroup as a destination, autogroup:internet too (as Tailscale does): that waits for nothing
  const byError = section !== 'sshtests'
  return PENDING.find(f => (f.section !== undefined && f.section === section) || (byError && (f.error?.test(e.reason) ?? false)))
}

/** Judged is Warren's answer to a policy (the policy when accepted), with the pending feature that decided it. */
interface Judged { policy?: Policy, errors: PolicyError[], pending?: PendingFeature }

function judge (text: string, users: PolicyUser[], nodes: PolicyNode[]): Judged {
  const result = validatePolicy(text, users, nodes)
  if (result.policy !== undefined) return { policy: result.policy, errors: [] }
  const spans = topLevelSpans(text)
  const features = result.errors.map(e => pendingFor(text, spans, e))
  if (features.some(f => f === undefined)) return { errors: result.errors }
  // an error outside the pending features was found above, so the first names the feature
  return { errors: result.errors, pending: features[0]! }
}

function topology (r: CorpusRecord): { users: PolicyUser[], nodes: PolicyNode[] } {
  // the capture's tailnet: its first user owns it, the others are admins (as Tailscale's answers for autogroup:owner/admin show)
  const users = r.topology.users.map((u, i): PolicyUser => ({ name: u.name, ...(u.email === undefined ? {} : { email: u.email }), role: i === 0 ? 'owner' : 'admin' }))
  const nodes = Object.entries(r.topology.nodes).map(([name, n]): PolicyNode => {
    const node: PolicyNode = { id: name, name, tags: n.tags, ipv4: n.ipv4, ipv6: n.ipv6, advertisedRoutes: n.routable_ips, approvedRoutes: n.approved_routes }
    if (n.user !== undefined) node.user = n.user
    return node
  })
  return { users, nodes }
}

/** runCase judges one corpus record; a disagreement in KNOWN_DIFFERENCES is `listed`, with its reason. */
export function runCase (r: CorpusRecord): CaseResult {
  const c = judgeCase(r)
  const known = KNOWN_DIFFERENCES[r.id]
  return c.verdict === 'disagree' && known !== undefined ? { ...c, verdict: 'listed', reason: known } : c
}

function judgeCase (r: CorpusRecord): CaseResult {
  const { users, nodes } = topology(r)
  const w = judge(policyText(r), users, nodes)
  const result = (verdict: Verdict, reason: string, details: string[] = []): CaseResult => ({ id: r.id, verdict, reason, details })
  if (w.pending !== undefined) return result('pending', w.pending.reason)
  const tailscaleAccepted = r.tailscale_status === 200
  if (!tailscaleAccepted) {
    return w.policy !== undefined ? result('disagree', `Tailscale refuses (${r.tailscale_error ?? r.tailscale_status}), Warren accepts`) : result('agree', '')
  }
  if (w.policy === undefined) return result('disagree', 'Tailscale accepts, Warren refuses', w.errors.map(e => e.message))
  const engine = createPolicyEngine(w.policy, users)
  engine.setNodes(nodes)
  const details: string[] = []
  const ssh = compileSshPolicy(w.policy, users, nodes)
  for (const n of nodes) {
    const captured = r.nodes?.[n.id]
    // Tailscale's capture lacks a node now and then: there is nothing to compare it with
    if (r.nodes !== null && captured === undefined) continue
    if (r.category === 'nodeattrs') for (const d of attrDifferences(n.id, captured?.capMap, engine.attrsFor(n.id))) details.push(`${n.name} ${d}`)
    const tsFilter = captured?.packetFilter ?? []
    for (const d of accessDifferences(tailscaleAccess(tsFilter, [n.ipv4, n.ipv6]), warrenAccess(engine.filterFor(n.id), [n.ipv4, n.ipv6]))) details.push(`${n.name} ${d}`)
    for (const d of accessDifferences(tailscaleRoutedAccess(tsFilter, n), warrenRoutedAccess(engine.filterFor(n.id), n))) details.push(`${n.name} forwards ${d}`)
    for (const [where, spans] of Object.entries(exitSpans(n) ?? {})) {
      for (const d of accessDifferences(tailscaleAccessWithin(tsFilter, spans), warrenAccessWithin(engine.filterFor(n.id), spans))) details.push(`${n.name} forwards (${where}) ${d}`)
    }
    for (const d of sshDifferences(captured?.sshRules, ssh.get(n.id)!)) details.push(`${n.name} ${d}`)
    const tsCaps = tailscaleCaps(captured?.packetFilterRules ?? [], [n.ipv4, n.ipv6])
    for (const d of capDifferences(tsCaps, warrenCaps(engine.filterFor(n.id), [n.ipv4, n.ipv6]))) details.push(`${n.name} ${d}`)
  }
  if (details.length > 0) return result('disagree', 'filters differ', details)
  return result('agree', '')
}

/** CategoryResult sums one category's cases. */
export interface CategoryResult {
  category: Category
  cases: CaseResult[]
  agree: number
  disagree: number
  pending: number
  listed: number
  /** pendingReasons: feature -> number of cases waiting for it */
  pendingReasons: Map<string, number>
}

/** runCategory judges every record of one category. */
export function runCategory (category: Category, records: readonly CorpusRecord[]): CategoryResult {
  const cases = records.map(runCase)
  const pendingReasons = new Map<string, number>()
  for (const c of cases) if (c.verdict === 'pending') pendingReasons.set(c.reason, (pendingReasons.get(c.reason) ?? 0) + 1)
  const count = (v: Verdict): number => cases.filter(c => c.verdict === v).length
  return { category, cases, agree: count('agree'), disagree: count('disagree'), pending: count('pending'), listed: count('listed'), pendingReasons }
}
