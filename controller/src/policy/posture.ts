import { HOST_ATTR_KEYS, type PostureValue } from '@warren/protocol'
import { didYouMean } from './errors.js'
import type { JsonLike, SectionReader } from './section-reader.js'
import type { Policy, PostureCondition, PostureDef, PostureOp } from './types.js'

export type { PostureCondition, PostureDef, PostureOp } from './types.js'

/**
 * Device postures, as Tailscale writes them: `"postures": {"posture:latest": ["node:os ==
 * 'linux'", "node:tsVersion >= '1.40'"]}` names a set of conditions on a node's attributes
 * (all must hold); `srcPosture` on a rule, or `defaultSrcPosture` for rules without one,
 * lets a source in only while its node meets at least one of the listed postures.
 */

/** PostureAttrs are a node's attributes, as the policy reads them. */
export type PostureAttrs = Readonly<Record<string, PostureValue>>

const NAME = /^posture:[A-Za-z0-9_-]{1,60}$/
const ATTR = '([A-Za-z]+:[A-Za-z0-9_]+)'
const VALUE = `('[^']*'|"[^"]*"|-?\\d+(?:\\.\\d+)?|true|false)`
const SET_RE = new RegExp(`^\\s*${ATTR}\\s+(IS\\s+SET|NOT\\s+SET)\\s*$`, 'i')
const IN_RE = new RegExp(`^\\s*${ATTR}\\s+(NOT\\s+IN|IN)\\s*\\[(.*)\\]\\s*$`, 'i')
const CMP_RE = new RegExp(`^\\s*${ATTR}\\s*(==|!=|<=|>=|<|>)\\s*${VALUE}\\s*$`, 'i')
const SYNTAX_HELP = "write ATTRIBUTE OPERATOR VALUE, for example node:os == 'linux', node:tsVersion >= '1.40', " +
  "custom:tier IN ['prod', 'staging'] or custom:managed IS SET"

/** parseValue reads one literal: a quoted string, a number, true or false. */
function parseValue (s: string): PostureValue | undefined {
  const t = s.trim()
  if (/^'[^']*'$|^"[^"]*"$/.test(t)) return t.slice(1, -1)
  if (/^-?\d+(\.\d+)?$/.test(t)) return Number(t)
  if (/^(true|false)$/i.test(t)) return t.toLowerCase() === 'true'
  return undefined
}

/** checkAttr says what is wrong with an attribute name, if anything: Warren knows node: attributes it reports and custom: ones. */
function checkAttr (attr: string): string | undefined {
  if (attr.startsWith('custom:')) return undefined
  if (attr.startsWith('node:')) {
    if ((HOST_ATTR_KEYS as readonly string[]).includes(attr)) return undefined
    return `Warren nodes do not report ${attr}; they report ${HOST_ATTR_KEYS.join(', ')} (an admin can set others as custom: attributes)`
  }
  return `"${attr}" is not an attribute Warren knows: use ${HOST_ATTR_KEYS.join(', ')} or custom:NAME (set with 'warren admin nodes attrs set')`
}

/** parsePostureCondition reads one condition; it returns the reason when it is malformed. */
export function parsePostureCondition (text: string): PostureCondition | string {
  const set = SET_RE.exec(text)
  const list = set === null ? IN_RE.exec(text) : null
  const cmp = set === null && list === null ? CMP_RE.exec(text) : null
  const attr = set?.[1] ?? list?.[1] ?? cmp?.[1]
  if (attr === undefined) return `"${text}" is not a posture condition: ${SYNTAX_HELP}`
  const bad = checkAttr(attr)
  if (bad !== undefined) return bad
  if (set !== null) return { attr, op: set[2]!.toUpperCase().replace(/\s+/, ' ') as PostureOp, values: [], text }
  if (list !== null) {
    const items = list[3]!.trim() === '' ? [] : list[3]!.split(',')
    const values = items.map(parseValue)
    if (items.length === 0 || values.some(v => v === undefined)) {
      return `"${text}": the list after ${list[2]!.toUpperCase()} must hold one or more values, each a quoted string, a number or true/false, for example ['macos', 'linux']`
    }
    return { attr, op: list[2]!.toUpperCase().replace(/\s+/, ' ') as PostureOp, values: values as PostureValue[], text }
  }
  const op = cmp![2] as PostureOp
  const value = parseValue(cmp![3]!)!
  if (typeof value === 'boolean' && op !== '==' && op !== '!=') return `"${text}": true and false can only be compared with == or !=`
  return { attr, op, values: [value], text }
}

/** versionParts reads `1.40.2` (or `v1.40.2-rc1`: what follows - or + is ignored) as numbers; undefined if it is not a version. */
function versionParts (s: string): number[] | undefined {
  const m = /^v?(\d+(?:\.\d+)*)(?:[-+].*)?$/.exec(s.trim())
  return m === null ? undefined : m[1]!.split('.').map(Number)
}

/**
 * compareValues orders two values: numbers as numbers, versions part by part (`1.9` <
 * `1.40`, a missing part counts as 0), other strings as text; undefined when they cannot be
 * compared (different kinds, or booleans).
 */
function compareValues (a: PostureValue, b: PostureValue): number | undefined {
  if (typeof a === 'number' && typeof b === 'number') return a - b
  if (typeof a !== 'string' || typeof b !== 'string') return undefined
  const va = versionParts(a)
  const vb = versionParts(b)
  if (va !== undefined && vb !== undefined) {
    for (let i = 0; i < Math.max(va.length, vb.length); i++) {
      const d = (va[i] ?? 0) - (vb[i] ?? 0)
      if (d !== 0) return d
    }
    return 0
  }
  return a < b ? -1 : a > b ? 1 : 0
}

/**
 * conditionHolds evaluates one condition. An attribute that is not set meets only NOT SET:
 * every comparison with it, != and NOT IN included, fails, so a node that reports nothing
 * never slips through a negative condition.
 */
export function conditionHolds (c: PostureCondition, attrs: PostureAttrs | undefined): boolean {
  const v = attrs === undefined || !Object.hasOwn(attrs, c.attr) ? undefined : attrs[c.attr]
  if (c.op === 'IS SET') return v !== undefined
  if (c.op === 'NOT SET') return v === undefined
  if (v === undefined) return false
  const first = c.values[0]!
  switch (c.op) {
    case '==': return v === first
    case '!=': return v !== first
    case 'IN': return c.values.includes(v)
    case 'NOT IN': return !c.values.includes(v)
  }
  const d = compareValues(v, first)
  if (d === undefined) return false
  switch (c.op) {
    case '<': return d < 0
    case '<=': return d <= 0
    case '>': return d > 0
    default: return d >= 0
  }
}

/** postureHolds: a node meets a posture when it meets every condition of it. */
export function postureHolds (def: PostureDef, attrs: PostureAttrs | undefined): boolean {
  return def.conditions.every(c => conditionHolds(c, attrs))
}

/** parsePostures reads the `postures` section into the policy. */
export function parsePostures<N extends JsonLike> (section: N, policy: Policy, r: SectionReader<N>): void {
  for (const prop of r.object(section, 'postures') ?? []) {
    const [keyNode, value] = prop.children as [N, N]
    const name = String(keyNode.value)
    if (!NAME.test(name)) { r.err(keyNode, `posture name "${name}" must be "posture:" and a name (letters, digits, - or _), for example posture:latest`); continue }
    if (policy.postures.has(name)) { r.err(keyNode, `posture ${name} is defined twice`); continue }
    const conditions: PostureCondition[] = []
    for (const { value: text, node } of r.strings(value, `postures["${name}"]`)) {
      const c = parsePostureCondition(text)
      if (typeof c === 'string') r.err(node, c)
      else conditions.push(c)
    }
    policy.postures.set(name, { conditions, pos: r.pos(keyNode) })
  }
}

/** parsePostureNames reads a `srcPosture` or `defaultSrcPosture` list: names of postures the policy defines. */
export function parsePostureNames<N extends JsonLike> (n: N, what: string, policy: Policy, r: SectionReader<N>): string[] {
  const out: string[] = []
  for (const { value, node } of r.strings(n, what)) {
    if (!policy.postures.has(value)) {
      r.err(node, `${what}: posture ${value} is not defined in "postures"`, didYouMean(value, policy.postures.keys()))
      continue
    }
    if (!out.includes(value)) out.push(value)
  }
  return out
}

/** parseTestAttrs reads a test's `srcPostureAttrs`: attribute -> string, number or boolean. */
export function parseTestAttrs<N extends JsonLike> (n: N, r: SectionReader<N>): Record<string, PostureValue> {
  const out: Record<string, PostureValue> = {}
  for (const prop of r.object(n, 'srcPostureAttrs') ?? []) {
    const [keyNode, value] = prop.children as [N, N]
    const key = String(keyNode.value)
    const bad = /^[A-Za-z]+:[A-Za-z0-9_]+$/.test(key) ? checkAttr(key) : `"${key}" is not an attribute: write node:os or custom:NAME`
    if (bad !== undefined) { r.err(keyNode, bad); continue }
    if (!['string', 'number', 'boolean'].includes(value.type)) { r.err(value, `srcPostureAttrs["${key}"] must be a string, a number or true/false`); continue }
    Object.defineProperty(out, key, { value: value.value as PostureValue, enumerable: true, writable: true, configurable: true })
  }
  return out
}
