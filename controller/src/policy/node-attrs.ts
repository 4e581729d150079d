import { RANDOMIZE_CLIENT_PORT, type NodeAttrs } from '@warren/protocol'
import { didYouMean } from './errors.js'
import type { JsonLike, PolicyReader } from './section-reader.js'
import type { NodeAttrsEntry } from './types.js'
import { ROLE_AUTOGROUPS as ROLE_TARGETS } from './users.js'

/**
 * nodeAttrs gives nodes attributes: `{"target": ["tag:server"], "attr": ["randomize-client-port"]}`,
 * or capabilities with values: `"app": {"example.com/cap/x": [{...}]}`. Each node gets
 * the union of the entries whose target names it, in its own map only. Warren acts on
 * the attributes in WARREN_ATTRS, and does what BUILT_IN_ATTRS ask anyway; Tailscale's
 * own attributes (funnel, Taildrive, ...) are accepted and delivered, with a warning that
 * nothing in Warren acts on them; any other name is an application's capability, for
 * apps on the node to read (LocalAPI status, `self.attrs`).
 */

/** WARREN_ATTRS are the attributes that change what Warren does, with what they do. */
export const WARREN_ATTRS: Readonly<Record<string, string>> = {
  [RANDOMIZE_CLIENT_PORT]: 'the node\'s WireGuard listens on a random free UDP port'
}

/** TAILSCALE_ATTRS are Tailscale features Warren does not have; a policy may name them, but they do nothing here. */
const TAILSCALE_ATTRS: ReadonlySet<string> = new Set([
  'funnel', 'mullvad', 'disable-ipv4', 'disable-captive-portal-detection', 'disable-relay-server',
  'suggest-exit-node', 'default-auto-update', 'probe-udp-lifetime', 'store-appc-routes', 'ssh-behavior-v1', 'ssh-env-vars',
  'only-tcp-443', 'debug-disable-upnp', 'tailnet-display-name', 'user-dial-use-routes'
])
/** TAILSCALE_PREFIXES mark families of Tailscale attributes (`nextdns:<profile>`, `drive:share`, its capability URLs). */
const TAILSCALE_PREFIXES = ['nextdns:', 'drive:', 'https://tailscale.com/cap/', 'tailscale.com/cap/']

/** BUILT_IN_ATTRS turn on in Tailscale what Warren always does (MagicDNS answers AAAA with the node's IPv6): no warning. */
const BUILT_IN_ATTRS: ReadonlySet<string> = new Set(['magicdns-aaaa'])

/** isTailscaleOnlyAttr says whether an attribute is one of Tailscale's own that Warren has no feature for. */
export function isTailscaleOnlyAttr (name: string): boolean {
  if (BUILT_IN_ATTRS.has(name)) return false
  return TAILSCALE_ATTRS.has(name) || TAILSCALE_PREFIXES.some(p => name.startsWith(p))
}

const ENTRY_KEYS = ['target', 'attr', 'app', 'ipPool']
/** SELF: autogroup:self names no node by itself (it is relative to a source), so it targets nothing. */
const SELF = 'autogroup:self'

/** parseNodeAttrs reads the `nodeAttrs` list; bad entries are errors, Tailscale-only attributes warnings (one per name). */
export function parseNodeAttrs<N extends JsonLike> (section: N, r: PolicyReader<N>): NodeAttrsEntry[] {
  const out: NodeAttrsEntry[] = []
  const warned = new Set<string>()
  ;(r.array(section, 'nodeAttrs') ?? []).forEach((item, index) => {
    const where = `nodeAttrs[${index}]`
    const props = r.object(item, where)
    if (props === undefined) return
    const entry: NodeAttrsEntry = { pos: r.pos(item), targets: [], attrs: new Map() }
    let ok = true
    let target: N | undefined
    for (const prop of props) {
      const [keyNode, value] = prop.children as [N, N]
      const key = String(keyNode.value)
      if (key === 'target') {
        target = value
        ok = readTargets(value, where, entry, r) && ok
      } else if (key === 'attr') {
        for (const { value: name, node } of r.strings(value, `${where}.attr`)) {
          if (name.trim() === '') { r.err(node, `${where}.attr has an empty attribute name`); ok = false; continue }
          entry.attrs.set(name, entry.attrs.get(name) ?? [])
          if (isTailscaleOnlyAttr(name) && !warned.has(name)) {
            warned.add(name)
            r.warn(node, `attribute "${name}" is a Tailscale feature Warren does not have: nodes receive it, but it changes nothing`)
          }
        }
      } else if (key === 'app') {
        ok = readApp(value, where, entry, r) && ok
      } else if (key === 'ipPool') {
        r.err(keyNode, `${where}.ipPool: address pools are not supported by Warren (nodes keep the addresses Warren assigned); remove it`)
        ok = false
      } else {
        r.err(keyNode, `unknown key "${key}" in ${where}`, didYouMean(key, ENTRY_KEYS))
        ok = false
      }
    }
    if (target === undefined) { r.err(item, `${where} has no "target": add "target": ["tag:server"] (or ["*"] for every node)`); ok = false }
    if (ok) out.push(entry)
  })
  return out
}

function readTargets<N extends JsonLike> (n: N, where: string, entry: NodeAttrsEntry, r: PolicyReader<N>): boolean {
  let ok = true
  for (const { value, node } of r.strings(n, `${where}.target`)) {
    if (value === SELF) {
      r.err(node, `${where}.target: autogroup:self names no node by itself (it means a source user's own devices)`, 'use autogroup:member')
      ok = false
      continue
    }
    // a role (autogroup:admin) names the devices of the users who hold it
    const selector = r.selector(value, node, ROLE_TARGETS.includes(value) ? 'src' : 'dst')
    if (selector === undefined) ok = false
    else entry.targets.push(selector)
  }
  return ok
}

/** readApp reads `"app": {"name": [values...]}`: each capability's values are JSON objects, as in grants. */
function readApp<N extends JsonLike> (n: N, where: string, entry: NodeAttrsEntry, r: PolicyReader<N>): boolean {
  let ok = true
  for (const prop of r.object(n, `${where}.app`) ?? []) {
    const [keyNode, value] = prop.children as [N, N]
    const name = String(keyNode.value)
    const values = r.array(value, `${where}.app["${name}"]`)
    if (name.trim() === '' || values === undefined) {
      if (name.trim() === '') r.err(keyNode, `${where}.app has an empty capability name`)
      ok = false
      continue
    }
    const bad = values.find(v => v.type !== 'object')
    if (bad !== undefined) { r.err(bad, `each value of ${where}.app["${name}"] must be an object ({ ... })`); ok = false; continue }
    entry.attrs.set(name, [...(entry.attrs.get(name) ?? []), ...values.map(jsonValue)])
  }
  return ok
}

/** jsonValue turns a parsed JSON node back into a plain value. */
function jsonValue (n: JsonLike): unknown {
  switch (n.type) {
    case 'object': return Object.fromEntries((n.children ?? []).map(p => [String(p.children![0]!.value), jsonValue(p.children![1]!)]))
    case 'array': return (n.children ?? []).map(jsonValue)
    default: return n.value ?? null
  }
}


/** CompiledNodeAttrs is a nodeAttrs entry with its targets turned into selector keys. */
export interface CompiledNodeAttrs { keys: string[], attrs: ReadonlyMap<string, unknown[]> }

/** attrsForKeys merges the attributes of every entry whose target keys a node matches. */
export function attrsForKeys (entries: readonly CompiledNodeAttrs[], nodeKeys: ReadonlySet<string>): NodeAttrs {
  // names sorted, so equal attributes serialize the same
  const merged = new Map<string, unknown[]>()
  for (const e of entries) {
    if (!e.keys.some(k => nodeKeys.has(k))) continue
    for (const [name, values] of e.attrs) merged.set(name, [...(merged.get(name) ?? []), ...values])
  }
  return Object.fromEntries([...merged].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0))
}

/** parseRandomizeClientPort reads the top-level `randomizeClientPort`: true gives every node randomize-client-port. */
export function parseRandomizeClientPort<N extends JsonLike> (n: N, r: PolicyReader<N>): NodeAttrsEntry[] {
  if (n.type !== 'boolean') { r.err(n, 'randomizeClientPort must be true or false'); return [] }
  return n.value === true ? [{ pos: r.pos(n), targets: [{ kind: 'all' }], attrs: new Map([[RANDOMIZE_CLIENT_PORT, []]]) }] : []
}
