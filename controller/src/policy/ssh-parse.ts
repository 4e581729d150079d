import type { Node as JsonNode } from 'jsonc-parser'
import { didYouMean } from './errors.js'
import type { PolicyReader } from './section-reader.js'
import { createUserDirectory } from './users.js'
import type { PolicyUser, Selector, SourcePos, SshAction, SshPolicyRule, SshPolicyTest, SshSelector, SshTestTarget, SshTestUser } from './types.js'

/**
 * SshSectionReader is what the policy parser lends the `ssh` and `sshTests` readers: its
 * shape checks, which report at the right line, and its readers of selectors and test
 * identities, so an alias means the same here as in acls.
 */
export interface SshSectionReader extends PolicyReader<JsonNode> {
  keys: (obj: JsonNode, where: string, known: Record<string, string>, unsupported: Record<string, string>,
    unsupportedMessage: (name: string) => string) => Map<string, JsonNode>
  /** errorCount: how many errors were reported so far */
  errorCount: () => number
  identity: (s: string, n: JsonNode, role: 'src' | 'target') => boolean
  oneLine: (n: JsonNode) => string
  /** users: the users the policy is checked against, when known */
  users?: readonly PolicyUser[]
}

const RULE_KEYS: Record<string, string> = { action: 'action', src: 'src', dst: 'dst', users: 'users', checkperiod: 'checkPeriod', acceptenv: 'acceptEnv' }
const UNSUPPORTED_RULE: Record<string, string> = { srcposture: 'srcPosture' }
const TEST_KEYS: Record<string, string> = { src: 'src', dst: 'dst', accept: 'accept', check: 'check', deny: 'deny' }
const ACTIONS: readonly SshAction[] = ['accept', 'check']
/** DEFAULT_CHECK_PERIOD is how long a `check` holds when the rule does not say: 12 hours, as in Tailscale. */
export const DEFAULT_CHECK_PERIOD_SECONDS = 12 * 3600
/** MAX_CHECK_PERIOD is Tailscale's upper bound on `checkPeriod`: a week. */
const MAX_CHECK_PERIOD_SECONDS = 168 * 3600
/** SSH_SOURCES and SSH_DESTINATIONS are the selector kinds Tailscale takes in an ssh rule. */
const SSH_SOURCES = ['user', 'group', 'tag', 'domain', 'autogroup:member', 'autogroup:tagged']
const SSH_DESTINATIONS = ['user', 'tag', 'autogroup:self', 'autogroup:tagged']
/** SELF_SOURCES: autogroup:self means the source user's own devices, so its sources must be users. */
const SELF_SOURCES = ['user', 'group', 'domain', 'autogroup:member']
const LOCALPART = 'localpart:*@'
const DOMAIN = /^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/i
const NO_SERVER = 'the ssh rules are checked and compiled but grant nothing yet: Warren has no SSH server, so no node enforces them; ' +
  'who may reach port 22 stays decided by acls and grants'

/**
 * localpartDomain is the domain of `localpart:*@domain`, or undefined for any other login
 * name (Tailscale takes `localpart:foo` and the like as literal names).
 */
export function localpartDomain (name: string): string | undefined {
  const domain = name.startsWith(LOCALPART) ? name.slice(LOCALPART.length) : undefined
  return domain !== undefined && DOMAIN.test(domain) ? domain : undefined
}

function kindOf (s: Selector): string {
  return s.kind === 'autogroup' ? `autogroup:${s.name}` : s.kind
}

/**
 * parseSsh reads the `ssh` section as Tailscale does: each rule has an action (`accept`
 * or `check`), sources (users, groups, tags, autogroup:member, autogroup:tagged,
 * user:*@domain), destinations (autogroup:self, tags, autogroup:tagged, or a user
 * when every source is that user), login names (`users`) and optionally `checkPeriod`
 * and `acceptEnv`. Strings are trimmed, as Tailscale trims them.
 */
export function parseSsh (section: JsonNode, r: SshSectionReader): SshPolicyRule[] {
  const rules: SshPolicyRule[] = []
  const items = r.array(section, 'ssh') ?? []
  if (items.length > 0) r.warn(section, NO_SERVER)
  items.forEach((item, index) => {
    if (r.object(item, `ssh[${index}]`) === undefined) return
    const rule = parseRule(item, index, r)
    if (rule !== undefined) rules.push(rule)
  })
  return rules
}

/** present is a key's value unless it is missing or JSON null, which Tailscale reads alike. */
function present (n: JsonNode | undefined): JsonNode | undefined {
  return n === undefined || n.type === 'null' ? undefined : n
}

function parseRule (item: JsonNode, index: number, r: SshSectionReader): SshPolicyRule | undefined {
  const where = `ssh rule ${index + 1} (ssh[${index}])`
  const keys = r.keys(item, where, RULE_KEYS, UNSUPPORTED_RULE, name => `"${name}" in ${where} is not supported by Warren (device posture); remove it`)
  const before = r.errorCount()
  const fail: Fail = r.err
  const action = parseAction(keys.get('action'), item, where, fail)
  const src = selectors(keys.get('src'), 'src', where, r, fail)
  const dst = selectors(keys.get('dst'), 'dst', where, r, fail)
  if (src.length === 0) r.warn(item, `${where} has no sources, so it lets no one in`)
  if (dst.length === 0) r.warn(item, `${where} has no destinations, so it opens no device`)
  checkCombinations(where, src, dst, r, fail)
  const users = loginNames(present(keys.get('users')), item, where, r, fail)
  const checkPeriod = present(keys.get('checkPeriod'))
  let checkPeriodSeconds = action === 'check' ? DEFAULT_CHECK_PERIOD_SECONDS : undefined
  if (checkPeriod !== undefined) {
    const seconds = parseCheckPeriod(checkPeriod, fail)
    if (action === 'accept') r.warn(checkPeriod, `checkPeriod applies to "check" rules; ${where} accepts without a check, so it has no effect`)
    else if (seconds !== undefined) checkPeriodSeconds = seconds
  }
  const acceptEnvNode = present(keys.get('acceptEnv'))
  const acceptEnv = acceptEnvNode === undefined ? undefined : r.strings(acceptEnvNode, 'acceptEnv').map(({ value, node }) => {
    if (value === '') fail(node, 'acceptEnv values cannot be empty: name an environment variable, or a pattern with * and ? (GIT_*, LC_?)')
    return value
  })
  if (r.errorCount() > before || action === undefined) return undefined
  const rule: SshPolicyRule = { index, pos: r.pos(item), text: r.oneLine(item), action, src: src.map(p => p.sel), dst: dst.map(p => p.sel), users }
  if (checkPeriodSeconds !== undefined) rule.checkPeriodSeconds = checkPeriodSeconds
  if (acceptEnv !== undefined) rule.acceptEnv = acceptEnv
  return rule
}

type Fail = (n: JsonNode, reason: string, suggestion?: string) => void

function parseAction (n: JsonNode | undefined, item: JsonNode, where: string, fail: Fail): SshAction | undefined {
  const value = present(n)
  if (value === undefined || (value.type === 'string' && String(value.value).trim() === '')) {
    fail(n ?? item, `${where}: action must be specified: "accept" or "check"`)
    return undefined
  }
  const text = value.type === 'string' ? String(value.value).trim() : undefined
  const action = ACTIONS.find(a => a === text)
  if (action === undefined) {
    fail(value, `"${text ?? String(value.value)}" is not a valid action: write "accept" or "check" (lowercase)`, text === undefined ? undefined : didYouMean(text, ACTIONS))
  }
  return action
}

/** Parsed is a selector with the node it was read from, for errors placed on it. */
interface Parsed { sel: SshSelector, node: JsonNode }

/** selectors reads `src` or `dst` (missing or empty: the rule matches no one) and checks each entry's kind. */
function selectors (n: JsonNode | undefined, side: 'src' | 'dst', where: string, r: SshSectionReader, fail: Fail): Parsed[] {
  const list = present(n)
  if (list === undefined) return []
  const allowed = side === 'src' ? SSH_SOURCES : SSH_DESTINATIONS
  const out: Parsed[] = []
  for (const { value, node } of r.strings(list, side)) {
    const text = value.trim()
    const selector = r.selector(text, node, side)
    if (selector === undefined) continue
    if (!allowed.includes(kindOf(selector))) {
      fail(node, `${where}: invalid ${side} "${text}": an ssh ${side === 'src' ? 'source' : 'destination'} is ` +
        (side === 'src' ? 'a user, group, tag, user:*@domain, autogroup:member or autogroup:tagged' : 'autogroup:self, a tag, autogroup:tagged or a user'),
      side === 'dst' && (selector.kind === 'host' || selector.kind === 'cidr') ? 'tag the device and name the tag' : undefined)
      continue
    }
    out.push({ sel: { selector, text, pos: r.pos(node) }, node })
  }
  return out
}

/**
 * checkCombinations holds the pairs Tailscale allows: autogroup:self only for sources
 * that are users, and a user destination only when every source is that same user
 * (a user may SSH into their own devices or into tagged ones, never into another's).
 */
function checkCombinations (where: string, src: readonly Parsed[], dst: readonly Parsed[], r: SshSectionReader, fail: Fail): void {
  const dir = createUserDirectory(r.users ?? [])
  const userOf = (s: Selector): string | undefined => s.kind === 'user' ? dir.resolve(s.token).name : undefined
  for (const d of dst) {
    const self = d.sel.selector.kind === 'autogroup' && d.sel.selector.name === 'self'
    const user = userOf(d.sel.selector)
    if (!self && user === undefined) continue
    for (const s of src) {
      if (self && !SELF_SOURCES.includes(kindOf(s.sel.selector))) {
        fail(s.node, `${where}: "${s.sel.text}" cannot reach autogroup:self, which means the source user's own devices; its sources must be users, groups, user:*@domain or autogroup:member`,
          `move "${s.sel.text}" to a rule without autogroup:self`)
      } else if (user !== undefined && userOf(s.sel.selector) !== user) {
        fail(s.node, `${where}: "${s.sel.text}" cannot SSH into ${d.sel.text}'s devices: a user destination takes only that same user as the source`,
          'for devices shared by several people, tag them and name the tag')
      }
    }
  }
}

/** loginNames reads `users`: required and not empty; `*` and empty names are refused, as in Tailscale. */
function loginNames (n: JsonNode | undefined, item: JsonNode, where: string, r: SshSectionReader, fail: Fail): string[] {
  const required = `${where}: users must be specified: list the login names, for example ["root"] or ["autogroup:nonroot"]`
  if (n === undefined) { fail(item, required); return [] }
  const names = r.strings(n, 'users')
  if (n.type === 'array' && names.length === 0 && (n.children ?? []).length === 0) fail(n, required)
  const domains = r.users === undefined ? undefined : new Set(r.users.flatMap(u => u.email === undefined ? [] : [u.email.toLowerCase().split('@')[1]!]))
  return names.map(({ value, node }) => {
    const name = value.trim()
    if (name === '') fail(node, 'user "" is not valid: write a login name such as root or ubuntu')
    else if (name === '*') fail(node, 'user "*" is not valid: for every login name but root write autogroup:nonroot', 'write "autogroup:nonroot"')
    else if (name.startsWith(LOCALPART) && name.length > LOCALPART.length) {
      const domain = name.slice(LOCALPART.length)
      if (localpartDomain(name) === undefined) fail(node, `"${name}": ${domain} is not a domain; localpart:*@example.com lets each user of example.com log in as the part of their email before @`)
      else if (domains !== undefined && !domains.has(domain.toLowerCase())) r.warn(node, `no user has an email in ${domain} yet, so ${name} lets no one log in until such a user exists`)
    } else if (name !== 'root' && name !== 'autogroup:nonroot' && /^(localpart|autogroup|group|tag):/.test(name)) {
      r.warn(node, `"${name}" is taken as a literal login name, as Tailscale does`,
        name.startsWith('localpart:') ? `for each user's own name write ${LOCALPART}DOMAIN` : 'login names are root, autogroup:nonroot, localpart:*@DOMAIN or a name')
    }
    return name
  })
}

/**
 * parseCheckPeriod reads a Go duration (`12h`, `30m`, `1h30m`, `0s`) or `always`; it must
 * be positive and at most 168h, as in Tailscale.
 */
function parseCheckPeriod (n: JsonNode, fail: Fail): number | undefined {
  const text = n.type === 'string' ? String(n.value).trim() : undefined
  if (text === 'always') return 0
  const seconds = text === undefined ? undefined : parseDuration(text)
  const help = 'write "always" or a duration such as 12h, 30m or 1h30m, at most 168h'
  if (seconds === undefined) { fail(n, `checkPeriod ${JSON.stringify(n.value)} is not a duration: ${help}`); return undefined }
  if (seconds < 0) { fail(n, `checkPeriod ${text!} must be a positive duration: ${help}`); return undefined }
  if (seconds > MAX_CHECK_PERIOD_SECONDS) { fail(n, `checkPeriod ${text!} is above the max (168h): ${help}`); return undefined }
  return seconds
}

const UNIT_SECONDS: Record<string, number> = { ns: 1e-9, us: 1e-6, µs: 1e-6, μs: 1e-6, ms: 1e-3, s: 1, m: 60, h: 3600 }

/** parseDuration reads Go's time.ParseDuration syntax into seconds (signed); undefined if malformed. */
export function parseDuration (s: string): number | undefined {
  const m = /^([+-]?)(.+)$/.exec(s)
  if (m === null) return undefined
  if (m[2] === '0') return 0
  const parts = [...m[2]!.matchAll(/(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/gy)]
  if (parts.length === 0 || parts.map(p => p[0]).join('') !== m[2]) return undefined
  const total = parts.reduce((sum, p) => sum + Number(p[1]) * UNIT_SECONDS[p[2]!]!, 0)
  return m[1] === '-' ? -total : total
}

/**
 * parseSshTests reads `sshTests`: a source identity (user, tag, host alias, address or
 * group), destinations (users, tags, host aliases or single addresses), and the login
 * names that must get in (`accept`), need a check (`check`) or stay out (`deny`).
 */
export function parseSshTests (section: JsonNode, r: SshSectionReader): SshPolicyTest[] {
  const tests: SshPolicyTest[] = []
  const items = r.array(section, 'sshTests') ?? []
  items.forEach((item, index) => {
    if (r.object(item, `sshTests[${index}]`) === undefined) return
    const where = `ssh test ${index + 1} (sshTests[${index}])`
    const before = r.errorCount()
    const keys = r.keys(item, where, TEST_KEYS, {}, name => name)
    const srcNode = keys.get('src')
    let src = ''
    if (srcNode === undefined || srcNode.type !== 'string') {
      r.err(srcNode ?? item, `${where} needs "src": one user (alice@), tag, host alias or address, as a string`)
    } else {
      src = String(srcNode.value).trim()
      r.identity(src, srcNode, 'src')
    }
    const dst: SshTestTarget[] = []
    const dstNode = present(keys.get('dst'))
    if (dstNode === undefined) { r.err(item, `${where} needs "dst": the devices to test, for example ["tag:server"]`) }
    for (const { value, node } of dstNode === undefined ? [] : r.strings(dstNode, 'dst')) {
      const target = value.trim()
      if (r.identity(target, node, 'target')) dst.push({ target, pos: r.pos(node) })
    }
    const names = (key: 'accept' | 'check' | 'deny'): SshTestUser[] => {
      const n = present(keys.get(key))
      return (n === undefined ? [] : r.strings(n, key)).flatMap(({ value, node }) => {
        if (value.trim() !== '') return [{ user: value.trim(), pos: r.pos(node) }]
        r.err(node, `${where}: a login name in "${key}" is empty`)
        return []
      })
    }
    const accept = names('accept')
    const check = names('check')
    const deny = names('deny')
    if (accept.length + check.length + deny.length === 0) r.err(item, `${where} tests nothing: list login names in "accept", "check" or "deny"`)
    if (r.errorCount() === before) tests.push({ index, pos: r.pos(item), src, srcPos: r.pos(srcNode!), dst, accept, check, deny })
  })
  return tests
}
