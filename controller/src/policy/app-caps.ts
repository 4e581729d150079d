import type { CapMap } from '@warren/protocol'
import type { PolicyRule } from './types.js'

/** JsonLike is the slice of a jsonc-parser node that reading `app` needs. */
interface JsonLike { type: string, value?: unknown, children?: JsonLike[] }

/** AppReader is what the policy parser lends: its error report at the right line. */
export interface AppReader<N extends JsonLike> {
  err: (n: N, reason: string, suggestion?: string) => void
}

/**
 * TAILSCALE_CAPS are the capabilities in the tailscale.com domain that Tailscale lets a
 * policy grant (Taildrive, peer relays, the web UI, the Kubernetes operator, tsidp); it
 * refuses every other name in that domain, and so does Warren, so that a policy means the
 * same in both.
 */
const TAILSCALE_CAPS: ReadonlySet<string> = new Set([
  'tailscale.com/cap/drive', 'tailscale.com/cap/relay', 'tailscale.com/cap/webui', 'tailscale.com/cap/kubernetes', 'tailscale.com/cap/tsidp'
])

/**
 * COMPANION_CAPS: granting one of these also gives its companion the other way, with no
 * values, as Tailscale does: a node that may use another's Taildrive shares may share to
 * it (`drive-sharer`), and a peer relay's clients are its relay targets (`relay-target`).
 */
const COMPANION_CAPS: Readonly<Record<string, string>> = {
  'tailscale.com/cap/drive': 'tailscale.com/cap/drive-sharer',
  'tailscale.com/cap/relay': 'tailscale.com/cap/relay-target'
}

/** CAP_NAME is `{domain}/{path}`: a host name, then a path of printable ASCII (it is shown in terminals). */
const CAP_NAME = /^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d+)?\/[\x21-\x7e]+$/i
const CAP_EXAMPLE = 'write a name such as "example.com/cap/web"'

/**
 * parseAppCaps reads a grant's `app` as Tailscale does: an object from capability names
 * (`{domain}/{path}`, not in the tailscale.com domain except the capabilities Tailscale
 * itself offers) to lists of JSON objects, which are kept as written. Undefined when
 * something is wrong (each problem is reported).
 */
export function parseAppCaps<N extends JsonLike> (node: N, where: string, r: AppReader<N>): CapMap | undefined {
  if (node.type !== 'object') {
    r.err(node, `"app" in ${where} must be an object of capabilities: {"example.com/cap/web": [{"role": "admin"}]}`)
    return undefined
  }
  const out = new Map<string, unknown[]>()
  let ok = true
  for (const prop of node.children ?? []) {
    const [keyNode, valueNode] = prop.children as [N, N]
    const name = String(keyNode.value)
    const problem = capNameProblem(name)
    if (problem !== undefined) { r.err(keyNode, `capability "${name}" in ${where}: ${problem.reason}`, problem.fix); ok = false; continue }
    if (out.has(name)) { r.err(keyNode, `capability "${name}" is given twice in ${where}; merge its values into one list`); ok = false; continue }
    const values = capValues(valueNode, name, where, r)
    if (values === undefined) { ok = false; continue }
    out.set(name, values)
  }
  return ok ? Object.fromEntries(out) : undefined
}

/** capNameProblem says what is wrong with a capability name, and how to fix it; undefined when it is fine. */
function capNameProblem (name: string): { reason: string, fix: string } | undefined {
  if (name.includes('://') || !CAP_NAME.test(name)) {
    return { reason: 'capability name must have the form {domain}/{path}, without a scheme', fix: CAP_EXAMPLE }
  }
  if (name.toLowerCase().startsWith('tailscale.com/') && !TAILSCALE_CAPS.has(name)) {
    return { reason: 'capability name must not be in the tailscale.com domain', fix: `use your own domain; of tailscale.com only ${[...TAILSCALE_CAPS].join(', ')} may be granted` }
  }
  return undefined
}

function capValues<N extends JsonLike> (node: N, name: string, where: string, r: AppReader<N>): unknown[] | undefined {
  if (node.type !== 'array') {
    r.err(node, `capability "${name}" in ${where} must be a list of JSON objects`, `write "${name}": [{}] to grant it without values`)
    return undefined
  }
  const items = (node.children ?? []) as N[]
  const bad = items.find(v => v.type !== 'object')
  if (bad !== undefined) {
    r.err(bad, `each value of capability "${name}" in ${where} must be a JSON object ({...})`, 'wrap the value in an object, such as {"role": "admin"}')
    return undefined
  }
  return items.map(jsonValue)
}

/** jsonValue turns a parsed node back into plain JSON; keys become own properties, whatever their name. */
function jsonValue (node: JsonLike): unknown {
  switch (node.type) {
    case 'object': return Object.fromEntries((node.children ?? []).map(p => [String(p.children![0]!.value), jsonValue(p.children![1]!)]))
    case 'array': return (node.children ?? []).map(jsonValue)
    default: return node.value ?? null
  }
}

/**
 * companionRule is the reverse rule a capability grant implies (see COMPANION_CAPS): from
 * the grant's destinations to its sources. Undefined when the grant gives none. A grant to
 * autogroup:self pairs a user's own nodes, which is the same relation both ways.
 */
export function companionRule (rule: PolicyRule): PolicyRule | undefined {
  const names = Object.keys(rule.caps ?? {}).flatMap(n => COMPANION_CAPS[n] === undefined ? [] : [COMPANION_CAPS[n]])
  if (names.length === 0) return undefined
  const caps = Object.fromEntries(names.map(n => [n, []]))
  if (rule.dst.some(d => d.selector.kind === 'autogroup' && d.selector.name === 'self')) return { ...rule, caps }
  return {
    ...rule,
    src: rule.dst.map(d => ({ selector: d.selector, text: d.text, pos: d.pos })),
    dst: rule.src.map(s => ({ selector: s.selector, text: s.text, pos: s.pos, ports: [] })),
    caps
  }
}
