import { createScanner, parseTree, printParseErrorCode, type Node as JsonNode, type ParseError } from 'jsonc-parser'
import { IpProto, isTag, protocolHasPorts, type UserRole } from '@warren/protocol'
import { parseCidr } from './addr.js'
import { companionRule, parseAppCaps } from './app-caps.js'
import { parseAutoApprovers } from './auto-approvers.js'
import { parseIpsets } from './ipsets.js'
import { parseNodeAttrs, parseRandomizeClientPort } from './node-attrs.js'
import type { PolicyReader } from './section-reader.js'
import { parsePostureNames, parsePostures, parseTestAttrs } from './posture.js'
import { PolicyError, didYouMean } from './errors.js'
import { parseSsh, parseSshTests, type SshSectionReader } from './ssh-parse.js'
import { IDP_GROUP_PREFIX, ROLE_AUTOGROUPS, createUserDirectory, isIdpGroupToken, isUserAutogroup, isUserToken } from './users.js'
import type { Policy, PolicyRule, PolicyTest, PolicyTestCase, PolicyUser, PortRange, RuleDestination, RuleSource, Selector, SourcePos } from './types.js'

/** DEFAULT_POLICY_TEXT is the policy in force when none is set: everyone reaches everyone. */
export const DEFAULT_POLICY_TEXT = `{
  // Default: every node may reach every other node on every port.
  "acls": [
    { "action": "accept", "src": ["*"], "dst": ["*:*"] },
  ],
}
`

/** ParseResult: `policy` is present only when there are no errors; warnings never block. */
export interface ParseResult {
  policy?: Policy
  errors: PolicyError[]
  warnings: PolicyError[]
}

/**
 * PROTO_NAMES maps Tailscale's protocol names to IANA numbers. `icmp` is ICMPv4 only, as
 * in Tailscale: ICMPv6 is `ipv6-icmp`, `icmpv6` or 58 (a rule without `proto` has both).
 */
export const PROTO_NAMES: Readonly<Record<string, readonly number[]>> = {
  icmp: [IpProto.ICMPv4],
  icmpv4: [IpProto.ICMPv4],
  igmp: [IpProto.IGMP],
  ipv4: [IpProto.IPinIP],
  'ip-in-ip': [IpProto.IPinIP],
  tcp: [IpProto.TCP],
  egp: [IpProto.EGP],
  igp: [IpProto.IGP],
  udp: [IpProto.UDP],
  gre: [IpProto.GRE],
  esp: [IpProto.ESP],
  ah: [IpProto.AH],
  'ipv6-icmp': [IpProto.ICMPv6],
  icmpv6: [IpProto.ICMPv6],
  sctp: [IpProto.SCTP],
  dccp: [IpProto.DCCP]
}

/** DEFAULT_PROTOS is what a rule without `proto` allows: TCP, UDP, ICMP and ICMPv6. */
export const DEFAULT_PROTOS: readonly number[] = [IpProto.ICMPv4, IpProto.TCP, IpProto.UDP, IpProto.ICMPv6]

export const ALL_PORTS: PortRange = { first: 0, last: 65535 }

const TOP_KEYS: Record<string, string> = { groups: 'groups', tagowners: 'tagOwners', hosts: 'hosts', acls: 'acls', grants: 'grants', tests: 'tests', autoapprovers: 'autoApprovers',
  ssh: 'ssh', sshtests: 'sshTests', nodeattrs: 'nodeAttrs', randomizeclientport: 'randomizeClientPort', ipsets: 'ipsets', postures: 'postures', defaultsrcposture: 'defaultSrcPosture',
  disableipv4: 'disableIPv4' }
const UNSUPPORTED_TOP: Record<string, string> = {
  derpmap: 'derpMap', onecgnatroute: 'OneCGNATRoute', attrs: 'attrs', settings: 'settings'
}
const RULE_KEYS: Record<string, string> = { action: 'action', src: 'src', dst: 'dst', proto: 'proto', users: 'src', ports: 'dst', srcposture: 'srcPosture' }
const UNSUPPORTED_RULE: Record<string, string> = { ip: 'ip', app: 'app', via: 'via' }
const GRANT_KEYS: Record<string, string> = { src: 'src', dst: 'dst', ip: 'ip', app: 'app', via: 'via', srcposture: 'srcPosture' }
/** UNSUPPORTED_GRANT: parts of a grant Warren cannot enforce yet, with what they would need. */
const UNSUPPORTED_GRANT: Record<string, string> = {}
const GRANT_FEATURES: Record<string, string> = {}
const TEST_KEYS: Record<string, string> = { src: 'src', proto: 'proto', accept: 'accept', deny: 'deny', srcpostureattrs: 'srcPostureAttrs' }
const UNSUPPORTED_TEST: Record<string, string> = {}
/** MAX_USER_WARNINGS: past this many users that do not exist yet, the rest are counted, not listed. */
const MAX_USER_WARNINGS = 100
/** MAX_DEPTH bounds how deeply lists and objects nest; a policy needs 4 levels. */
export const MAX_DEPTH = 64
/** RESERVED_NAMES are never a key or an alias: they name JavaScript's object machinery. */
const RESERVED_NAMES: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype'])
const AUTOGROUPS = ['autogroup:member', 'autogroup:tagged', 'autogroup:self', 'autogroup:internet', 'autogroup:danger-all', ...ROLE_AUTOGROUPS]
/** SELF_SOURCES are the source kinds a rule with an autogroup:self destination may have. */
const SELF_SOURCES = ['user', 'group', 'all', 'autogroup:member']
/** GRANT_SELF_SOURCES: a grant to autogroup:self is stricter, as in Tailscale: `*` is refused too. */
const GRANT_SELF_SOURCES = SELF_SOURCES.filter(k => k !== 'all')
const PORTS_HELP = 'ports must be *, a number 1-65535, a,b list or a-b range, without spaces (for example 22, 80,443 or 8000-8100)'
const IP_HELP = 'write *, ports (22, 80-90), or proto:ports (tcp:443, udp:53, icmp:*, 47:*)'

const SYNTAX_MESSAGES: Record<string, string> = {
  InvalidSymbol: 'unexpected character',
  InvalidNumberFormat: 'malformed number',
  PropertyNameExpected: 'expected a quoted key',
  ValueExpected: 'expected a value',
  ColonExpected: 'expected ":" after the key',
  CommaExpected: 'expected "," between entries',
  CloseBraceExpected: 'expected "}" to close the object',
  CloseBracketExpected: 'expected "]" to close the list',
  EndOfFileExpected: 'unexpected text after the end of the policy',
  InvalidCommentToken: 'malformed comment',
  UnexpectedEndOfComment: 'comment is not closed (missing */)',
  UnexpectedEndOfString: 'string is not closed (missing ")',
  UnexpectedEndOfNumber: 'number is cut short',
  InvalidUnicode: 'bad \\u escape in string',
  InvalidEscapeCharacter: 'bad escape character in string',
  InvalidCharacter: 'control character inside a string'
}

/**
 * parsePolicy reads a HuJSON policy file in Tailscale's syntax. It collects every
 * error (each with line:column and, where it can, what was meant) instead of stopping
 * at the first; when `users` is given, users that do not exist yet become warnings.
 */
export function parsePolicy (text: string, opts: { users?: readonly PolicyUser[] } = {}): ParseResult {
  return new PolicyParser(text, opts.users).run()
}

/**
 * parsePorts reads `*`, `22`, `80,443`, `8000-8100` (or a mix); undefined if malformed.
 * As in Tailscale, port 0 is not a port and spaces are not allowed (`*: 22` is refused).
 */
export function parsePorts (s: string): PortRange[] | undefined {
  if (s === '*') return [{ ...ALL_PORTS }]
  const out: PortRange[] = []
  for (const part of s.split(',')) {
    const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(part)
    if (m === null) return undefined
    const first = Number(m[1])
    const last = m[2] === undefined ? first : Number(m[2])
    if (first === 0 || last > 65535 || first > last) return undefined
    out.push({ first, last })
  }
  return out
}

/** parseProto reads a protocol name or IANA number (0-255); undefined if unknown. */
export function parseProto (v: string | number): number[] | undefined {
  if (typeof v === 'number') return Number.isInteger(v) && v >= 0 && v <= 255 ? [v] : undefined
  const s = v.trim().toLowerCase()
  if (/^\d{1,3}$/.test(s)) return parseProto(Number(s))
  const named = lookup(PROTO_NAMES, s)
  return named === undefined ? undefined : [...named]
}

/** GrantIp is one entry of a grant's `ip`: protocols and the ports they reach. */
export interface GrantIp { protos: number[], ports: PortRange[] }

/**
 * parseGrantIp reads one entry of a grant's `ip` as Tailscale does: `*` (every port of
 * TCP, UDP, ICMP and ICMPv6), ports alone (`22`, `80-90`, `80,443`: those protocols on
 * those ports), or `proto:ports` with a protocol name or IANA number (`tcp:443`,
 * `udp:53`, `icmp:*`, `47:*`). A protocol without ports takes only `*`. It returns the
 * reason when the entry is malformed.
 */
export function parseGrantIp (s: string): GrantIp | string {
  if (s === '*') return { protos: [...DEFAULT_PROTOS], ports: [{ ...ALL_PORTS }] }
  const i = s.indexOf(':')
  const protoText = i < 0 ? undefined : s.slice(0, i)
  const portText = i < 0 ? s : s.slice(i + 1)
  const protos = protoText === undefined ? [...DEFAULT_PROTOS] : parseProto(protoText)
  if (protos === undefined) return `unknown protocol "${protoText!}" in "${s}": use a name (${Object.keys(PROTO_NAMES).join(', ')}) or an IANA number 0-255`
  const ports = parsePorts(portText)
  if (ports === undefined) return `bad ports "${portText}" in "${s}": ${PORTS_HELP}; ${IP_HELP}`
  if (!protos.some(protocolHasPorts) && portText !== '*') return `"${s}": ${protoText!} has no ports, so write ${protoText!}:*`
  return { protos, ports }
}

/** splitHostPort splits `alias:ports`, `[v6]:ports`, `[v6]/len:ports` or `v6:ports` (at the last colon). */
export function splitHostPort (s: string): { host: string, ports: string } | undefined {
  if (s.startsWith('[')) {
    const m = /^\[([^\]]*)\](\/\d{1,3})?:(.*)$/.exec(s)
    return m === null ? undefined : { host: `${m[1]}${m[2] ?? ''}`, ports: m[3]! }
  }
  const i = s.lastIndexOf(':')
  if (i <= 0) return undefined
  return { host: s.slice(0, i), ports: s.slice(i + 1) }
}

/** isRouted: is the destination reached through a router or exit node (an address range, autogroup:internet), so that `via` applies? */
function isRouted (sel: Selector): boolean {
  return sel.kind === 'host' || sel.kind === 'cidr' || (sel.kind === 'autogroup' && sel.name === 'internet')
}

/** isPolicyTag: a tag as a policy may name it; Tailscale also wants the name to start with a letter (`tag:1server` is refused). */
function isPolicyTag (s: string): boolean {
  return isTag(s) && /^tag:[A-Za-z]/.test(s)
}

/** lookup reads a table by a key from the policy: only the table's own entries, never Object.prototype's. */
function lookup<V> (table: Readonly<Record<string, V>>, key: string): V | undefined {
  return Object.hasOwn(table, key) ? table[key] : undefined
}

/**
 * tooDeep finds where lists and objects first nest deeper than MAX_DEPTH, by scanning
 * tokens (strings and comments skip themselves), so the tree is never built for them.
 */
function tooDeep (text: string): number | undefined {
  const scanner = createScanner(text, true)
  let depth = 0
  for (let token = scanner.scan(); token !== TOKEN_EOF; token = scanner.scan()) {
    if (token === TOKEN_OPEN_BRACE || token === TOKEN_OPEN_BRACKET) {
      if (++depth > MAX_DEPTH) return scanner.getTokenOffset()
    } else if (token === TOKEN_CLOSE_BRACE || token === TOKEN_CLOSE_BRACKET) {
      depth = Math.max(0, depth - 1)
    }
  }
  return undefined
}

// jsonc-parser's SyntaxKind values (a const enum, which isolated modules cannot read).
const TOKEN_OPEN_BRACE = 1
const TOKEN_CLOSE_BRACE = 2
const TOKEN_OPEN_BRACKET = 3
const TOKEN_CLOSE_BRACKET = 4
const TOKEN_EOF = 17

class PolicyParser {
  private readonly errors: PolicyError[] = []
  private readonly warnings: PolicyError[] = []
  private readonly lineStarts: number[] = [0]
  private readonly policy: Policy
  private readonly userUses: Array<{ token: string, node: JsonNode }> = []

  constructor (private readonly text: string, private readonly users: readonly PolicyUser[] | undefined) {
    for (let i = 0; i < text.length; i++) if (text[i] === '\n') this.lineStarts.push(i + 1)
    this.policy = { groups: new Map(), tagOwners: new Map(), hosts: new Map(), ipsets: new Map(), postures: new Map(), acls: [], grants: [], tests: [], nodeAttrs: [], text }
  }

  run (): ParseResult {
    const deep = tooDeep(this.text)
    if (deep !== undefined) {
      this.errAt(deep, `lists and objects nest more than ${MAX_DEPTH} levels deep here; a policy needs only a few`)
      return this.result()
    }
    const syntax: ParseError[] = []
    const root = parseTree(this.text, syntax, { allowTrailingComma: true, disallowComments: false, allowEmptyContent: false })
    for (const e of syntax) {
      const code = printParseErrorCode(e.error)
      this.errAt(e.offset, `syntax error: ${lookup(SYNTAX_MESSAGES, code) ?? code}`)
    }
    if (syntax.length > 0 || root === undefined) {
      if (root === undefined && syntax.length === 0) this.errAt(0, 'the policy is empty: write at least {}')
      return this.result()
    }
    if (root.type !== 'object') {
      this.err(root, 'the policy must be an object ({ ... })')
      return this.result()
    }
    const sections = this.keys(root, 'the policy', TOP_KEYS, UNSUPPORTED_TOP, name =>
      `${name} is a Tailscale feature Warren does not support; remove it (Warren never ignores a section it cannot enforce)`)
    // Definitions first, so uses anywhere can be checked against them.
    const hosts = sections.get('hosts')
    if (hosts !== undefined) this.parseHosts(hosts)
    const ipsets = sections.get('ipsets')
    if (ipsets !== undefined) this.policy.ipsets = parseIpsets(ipsets, this.policy, this.reader)
    const groups = sections.get('groups')
    if (groups !== undefined) this.parseGroups(groups)
    const tagOwners = sections.get('tagOwners')
    if (tagOwners !== undefined) this.parseTagOwners(tagOwners)
    const autoApprovers = sections.get('autoApprovers')
    if (autoApprovers !== undefined) this.policy.autoApprovers = parseAutoApprovers(autoApprovers, this.policy, this.reader)
    const postures = sections.get('postures')
    if (postures !== undefined) parsePostures(postures, this.policy, this.reader)
    const defaultSrcPosture = sections.get('defaultSrcPosture')
    if (defaultSrcPosture !== undefined) this.policy.defaultSrcPosture = parsePostureNames(defaultSrcPosture, 'defaultSrcPosture', this.policy, this.reader)
    const acls = sections.get('acls')
    if (acls !== undefined) this.parseAcls(acls)
    const grants = sections.get('grants')
    if (grants !== undefined) this.parseGrants(grants, this.policy.acls.length)
    if (acls === undefined && grants === undefined) this.allowAll(root)
    const tests = sections.get('tests')
    if (tests !== undefined) this.parseTests(tests)
    const ssh = sections.get('ssh')
    if (ssh !== undefined) this.policy.ssh = parseSsh(ssh, this.sshReader())
    const sshTests = sections.get('sshTests')
    if (sshTests !== undefined) this.policy.sshTests = parseSshTests(sshTests, this.sshReader())
    const nodeAttrs = sections.get('nodeAttrs')
    if (nodeAttrs !== undefined) this.policy.nodeAttrs.push(...parseNodeAttrs(nodeAttrs, this.reader))
    const randomize = sections.get('randomizeClientPort')
    if (randomize !== undefined) this.policy.nodeAttrs.push(...parseRandomizeClientPort(randomize, this.reader))
    const disableIPv4 = sections.get('disableIPv4')
    if (disableIPv4 !== undefined) this.disableIPv4(disableIPv4)
    this.checkUsers()
    return this.result()
  }

  /**
   * disableIPv4 reads Tailscale's tailnet-wide `disableIPv4`: it only takes addresses away,
   * so, like the disable-ipv4 node attribute, it is accepted with a warning that Warren
   * keeps the nodes' IPv4 addresses.
   */
  private disableIPv4 (n: JsonNode): void {
    if (n.type !== 'boolean') this.err(n, 'disableIPv4 must be true or false')
    else if (n.value === true) this.warn(n, 'disableIPv4 is a Tailscale setting Warren does not act on: nodes keep their IPv4 addresses', 'remove it to silence this warning')
  }

  /** sshReader lends the ssh section readers this parser's checks (ssh-parse.ts). */
  private sshReader (): SshSectionReader {
    const reader: SshSectionReader = {
      ...this.reader,
      keys: (obj, where, known, unsupported, message) => this.keys(obj, where, known, unsupported, message),
      errorCount: () => this.errors.length,
      identity: (s, n, role) => this.identity(s, n, role),
      oneLine: n => this.oneLine(n)
    }
    if (this.users !== undefined) reader.users = this.users
    return reader
  }

  /** reader is what section parsers in other modules (autoApprovers, postures, ipsets, nodeAttrs) may use of this parser */
  private readonly reader: PolicyReader<JsonNode> = {
    object: (n, what) => this.object(n, what),
    array: (n, what) => this.array(n, what),
    strings: (n, what) => this.strings(n, what),
    err: (n, reason, suggestion) => this.err(n, reason, suggestion),
    warn: (n, reason, suggestion) => this.warn(n, reason, suggestion),
    pos: n => this.nodePos(n),
    useUser: (token, node) => this.userUses.push({ token, node }),
    selector: (value, node, side = 'dst') => this.selector(value, node, side)
  }

  private result (): ParseResult {
    const order = (a: PolicyError, b: PolicyError): number => a.line - b.line || a.column - b.column
    const errors = this.errors.sort(order)
    const warnings = this.warnings.sort(order)
    return errors.length === 0 ? { policy: this.policy, errors, warnings } : { errors, warnings }
  }

  // ---------- positions and reporting ----------

  private pos (offset: number, length = 0): SourcePos {
    let lo = 0
    let hi = this.lineStarts.length - 1
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1
      if (this.lineStarts[mid]! <= offset) lo = mid
      else hi = mid - 1
    }
    return { line: lo + 1, column: offset - this.lineStarts[lo]! + 1, offset, length }
  }

  private nodePos (n: JsonNode): SourcePos { return this.pos(n.offset, n.length) }

  private errAt (offset: number, reason: string, suggestion?: string): void {
    const p = this.pos(offset)
    this.errors.push(new PolicyError(p.line, p.column, reason, suggestion))
  }

  private err (n: JsonNode, reason: string, suggestion?: string): void { this.errAt(n.offset, reason, suggestion) }

  private warn (n: JsonNode, reason: string, suggestion?: string): void {
    const p = this.nodePos(n)
    this.warnings.push(new PolicyError(p.line, p.column, reason, suggestion))
  }

  private oneLine (n: JsonNode): string {
    return this.text.slice(n.offset, n.offset + n.length).replace(/\s+/g, ' ')
  }

  // ---------- shapes ----------

  /**
   * keys reads an object's properties, matching names case-insensitively as Tailscale
   * does; unsupported and unknown keys are errors, duplicates too.
   */
  private keys (obj: JsonNode, where: string, known: Record<string, string>, unsupported: Record<string, string>,
    unsupportedMessage: (name: string) => string): Map<string, JsonNode> {
    const out = new Map<string, JsonNode>()
    const firstAt = new Map<string, JsonNode>()
    for (const prop of obj.children ?? []) {
      const keyNode = prop.children?.[0]
      const value = prop.children?.[1]
      if (keyNode === undefined || value === undefined) continue
      const key = String(keyNode.value)
      const canonical = lookup(known, key.toLowerCase())
      if (canonical === undefined) {
        const bad = lookup(unsupported, key.toLowerCase())
        if (bad !== undefined) this.err(keyNode, unsupportedMessage(bad))
        else this.err(keyNode, `unknown key "${key}" in ${where}`, didYouMean(key, [...new Set(Object.values(known))]))
        continue
      }
      const first = firstAt.get(canonical)
      if (first !== undefined) {
        const p = this.nodePos(first)
        this.err(keyNode, `"${key}" is given twice in ${where} (first at ${p.line}:${p.column}); merge them`)
        continue
      }
      firstAt.set(canonical, keyNode)
      out.set(canonical, value)
    }
    return out
  }

  private object (n: JsonNode, what: string): JsonNode[] | undefined {
    if (n.type !== 'object') { this.err(n, `${what} must be an object ({ ... })`); return undefined }
    return n.children ?? []
  }

  private array (n: JsonNode, what: string): JsonNode[] | undefined {
    if (n.type !== 'array') { this.err(n, `${what} must be a list ([ ... ])`); return undefined }
    return n.children ?? []
  }

  private string (n: JsonNode, what: string): string | undefined {
    if (n.type !== 'string') { this.err(n, `${what} must be a string`); return undefined }
    return n.value as string
  }

  private strings (n: JsonNode, what: string): Array<{ value: string, node: JsonNode }> {
    const items = this.array(n, what)
    if (items === undefined) return []
    const out: Array<{ value: string, node: JsonNode }> = []
    for (const item of items) {
      const v = this.string(item, `each entry of ${what}`)
      if (v !== undefined) out.push({ value: v, node: item })
    }
    return out
  }

  // ---------- sections ----------

  private parseHosts (section: JsonNode): void {
    for (const prop of this.object(section, 'hosts') ?? []) {
      const [keyNode, value] = prop.children as [JsonNode, JsonNode]
      const name = String(keyNode.value)
      if (!/^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$/i.test(name) || name.includes(':')) {
        this.err(keyNode, `host alias "${name}" must be a plain name (letters, digits, ".", "-", "_"), not a user, tag or address`)
        continue
      }
      if (parseCidr(name) !== undefined) { this.err(keyNode, `host alias "${name}" must not look like an address`); continue }
      if (RESERVED_NAMES.has(name)) { this.err(keyNode, `host alias "${name}" is a reserved name; choose another`); continue }
      if (this.policy.hosts.has(name)) { this.err(keyNode, `host alias "${name}" is defined twice`); continue }
      const s = this.string(value, `hosts["${name}"]`)
      if (s === undefined) continue
      const cidr = parseCidr(s)
      if (cidr === undefined) { this.err(value, `hosts["${name}"] must be an IPv4/IPv6 address or CIDR, not "${s}"`); continue }
      this.policy.hosts.set(name, { cidr, pos: this.nodePos(keyNode) })
    }
  }

  private parseGroups (section: JsonNode): void {
    const props = this.object(section, 'groups') ?? []
    const names = props.map(p => String(p.children?.[0]?.value))
    for (const prop of props) {
      const [keyNode, value] = prop.children as [JsonNode, JsonNode]
      const name = String(keyNode.value)
      if (!/^group:[a-z0-9]([a-z0-9._-]*[a-z0-9])?$/i.test(name)) {
        this.err(keyNode, `group name "${name}" must be "group:" and a name (for example group:eng)`)
        continue
      }
      if (this.policy.groups.has(name)) { this.err(keyNode, `group ${name} is defined twice`); continue }
      const members: string[] = []
      for (const { value: m, node } of this.strings(value, name)) {
        if (m.startsWith('group:')) {
          this.err(node, `groups cannot contain groups (Tailscale does not allow nested groups): list the members of ${m} in ${name} instead`,
            names.includes(m) ? undefined : didYouMean(m, names))
        } else if (isIdpGroupToken(m)) {
          members.push(m)
        } else if (m.startsWith('tag:') || m.startsWith('autogroup:') || m === '*') {
          this.err(node, `groups contain users only; ${m} is not a user (write alice@, alice@example.com, or idp:GROUP for a group at the identity provider)`)
        } else if (!isUserToken(m)) {
          this.err(node, `"${m}" is not a user: write alice@, alice@example.com, or idp:GROUP for a group at the identity provider`, m === IDP_GROUP_PREFIX ? 'name the group after idp:, for example idp:engineering' : this.userGuess(m))
        } else {
          members.push(m.toLowerCase())
          this.userUses.push({ token: m, node })
        }
      }
      this.policy.groups.set(name, { members, pos: this.nodePos(keyNode) })
    }
  }

  private parseTagOwners (section: JsonNode): void {
    const props = this.object(section, 'tagOwners') ?? []
    const tagNames = props.map(p => String(p.children?.[0]?.value))
    for (const prop of props) {
      const [keyNode, value] = prop.children as [JsonNode, JsonNode]
      const tag = String(keyNode.value)
      if (!isPolicyTag(tag)) { this.err(keyNode, `tag "${tag}" must be "tag:" and a name of letters, digits and inner hyphens that starts with a letter (for example tag:web)`); continue }
      if (this.policy.tagOwners.has(tag)) { this.err(keyNode, `tag ${tag} has owners defined twice`); continue }
      const owners: string[] = []
      for (const { value: o, node } of this.strings(value, `tagOwners["${tag}"]`)) {
        if (o.startsWith('group:')) {
          if (!this.policy.groups.has(o)) { this.err(node, `group ${o} is not defined`, didYouMean(o, this.policy.groups.keys())); continue }
        } else if (o.startsWith('tag:')) {
          if (!tagNames.includes(o)) { this.err(node, `tag ${o} has no tagOwners entry`, didYouMean(o, tagNames)); continue }
        } else if (o.startsWith('autogroup:')) {
          if (!isUserAutogroup(o)) { this.err(node, `${o} cannot own a tag; use users, groups, tags, autogroup:member or a role (${ROLE_AUTOGROUPS.join(', ')})`, didYouMean(o, ['autogroup:member', ...ROLE_AUTOGROUPS])); continue }
        } else if (!isUserToken(o)) {
          this.err(node, `"${o}" is not a user, group or tag: write alice@, alice@example.com, group:x or tag:x`, this.userGuess(o))
          continue
        } else {
          this.userUses.push({ token: o, node })
        }
        owners.push(o.toLowerCase())
      }
      this.policy.tagOwners.set(tag, { owners, pos: this.nodePos(keyNode) })
    }
  }

  private parseAcls (section: JsonNode): void {
    const items = this.array(section, 'acls') ?? []
    items.forEach((item, index) => {
      const rule = this.parseRule(item, index)
      if (rule !== undefined) this.policy.acls.push(rule)
    })
  }

  /** parseGrants reads `grants`; their rules are numbered after the acls (`first`), so each rule has one number. */
  private parseGrants (section: JsonNode, first: number): void {
    const items = this.array(section, 'grants') ?? []
    items.forEach((item, index) => this.policy.grants.push(...this.parseGrant(item, index, first + index)))
  }

  /**
   * parseGrant reads one grant (`src`, `dst` aliases without ports, `ip`) into rules of the
   * same form as acls: one rule per set of protocols, each destination with that set's
   * ports, so the one compiler serves both.
   */
  private parseGrant (item: JsonNode, grantIndex: number, index: number): PolicyRule[] {
    if (this.object(item, `grants[${grantIndex}]`) === undefined) return []
    const before = this.errors.length
    const where = `grant ${grantIndex + 1} (grants[${grantIndex}])`
    const keys = this.keys(item, where, GRANT_KEYS, UNSUPPORTED_GRANT, name =>
      `"${name}" in ${where} is not supported yet (${lookup(GRANT_FEATURES, name) ?? name}); remove it (Warren never ignores what it cannot enforce)`)
    const srcNode = keys.get('src')
    const dstNode = keys.get('dst')
    const ipNode = keys.get('ip')
    if (srcNode === undefined) this.err(item, `${where} has no "src": add "src": ["..."]`)
    if (dstNode === undefined) this.err(item, `${where} has no "dst": add "dst": ["..."]`)
    const ips: GrantIp[] = []
    for (const { value, node } of ipNode === undefined ? [] : this.strings(ipNode, 'ip')) {
      const ip = parseGrantIp(value)
      if (typeof ip === 'string') this.err(node, ip)
      else ips.push(ip)
    }
    const appNode = keys.get('app')
    const caps = appNode === undefined ? undefined : parseAppCaps(appNode, where, { err: (n, reason, suggestion) => this.err(n, reason, suggestion) })
    // a grant gives traffic (`ip`), capabilities (`app`) or both; as in Tailscale, not nothing
    if ((ipNode === undefined || ipNode.children?.length === 0) && (appNode === undefined || (appNode.type === 'object' && appNode.children?.length === 0))) {
      this.err(ipNode ?? appNode ?? item, `${where} grants nothing: "ip" and "app" are both missing or empty`,
        'add "ip": ["*"] for all traffic, ports such as "ip": ["tcp:443"], or capabilities such as "app": {"example.com/cap/web": [{}]}')
    }
    const src = this.sources(srcNode)
    const dst: Array<{ selector: Selector, text: string, pos: SourcePos }> = []
    for (const { value, node } of dstNode === undefined ? [] : this.strings(dstNode, 'dst')) {
      const selector = this.grantDestination(value, node)
      if (selector !== undefined) dst.push({ selector, text: value, pos: this.nodePos(node) })
    }
    this.checkSelf(where, src, dst, GRANT_SELF_SOURCES)
    if (appNode !== undefined && dst.some(d => d.selector.kind === 'autogroup' && d.selector.name === 'internet')) {
      this.err(appNode, `${where}: capabilities ("app") cannot be granted to autogroup:internet, which is not a node`,
        'move autogroup:internet to a grant with "ip" only')
    }
    const viaNode = keys.get('via')
    const via = viaNode === undefined ? undefined : this.parseVia(viaNode, where, dst)
    const srcPosture = this.srcPosture(keys.get('srcPosture'), where)
    if (this.errors.length > before) return []
    const byProtos = new Map<string, { protos: number[], ports: PortRange[] }>()
    for (const ip of ips) {
      const protos = [...new Set(ip.protos)].sort((a, b) => a - b)
      const key = protos.join(',')
      const have = byProtos.get(key)
      if (have === undefined) byProtos.set(key, { protos, ports: [...ip.ports] })
      else have.ports.push(...ip.ports)
    }
    const text = this.oneLine(item)
    const rules: PolicyRule[] = [...byProtos.values()].map(({ protos, ports }) => ({
      index, pos: this.nodePos(item), text, src, protos, dst: dst.map(d => ({ ...d, ports })), ...(via === undefined ? {} : { via }), ...(srcPosture !== undefined ? { srcPosture } : {})
    }))
    // capabilities are a rule of their own that lets no traffic in: no protocols, no ports
    if (caps !== undefined && Object.keys(caps).length > 0) {
      const capRule: PolicyRule = { index, pos: this.nodePos(item), text, src, protos: [], dst: dst.map(d => ({ ...d, ports: [] })), caps }
      const companion = companionRule(capRule)
      rules.push(capRule, ...(companion === undefined ? [] : [companion]))
    }
    return rules
  }

  /**
   * parseVia reads a grant's `via`: the tags of the subnet routers or exit nodes its
   * destinations are reached through. Only address destinations (hosts, CIDRs) and
   * autogroup:internet are routed, so only they may have a `via`.
   */
  private parseVia (viaNode: JsonNode, where: string, dst: ReadonlyArray<{ selector: Selector, text: string, pos: SourcePos }>): string[] {
    const via: string[] = []
    for (const { value, node } of this.strings(viaNode, 'via')) {
      if (!value.startsWith('tag:')) this.err(node, `via "${value}" in ${where}: via can only be a tag (the tag of the subnet routers to go through)`, 'write "via": ["tag:router"]')
      else if (this.tagSelector(value, node) !== undefined) via.push(value)
    }
    if (viaNode.type === 'array' && (viaNode.children?.length ?? 0) === 0) this.err(viaNode, `"via" in ${where} names no routers`, 'list the routers\' tags, or remove "via"')
    for (const d of dst.filter(d => !isRouted(d.selector))) {
      this.errAt(d.pos.offset, `${where}: "${d.text}" is not an address range or autogroup:internet, and "via" only routes those (through subnet routers or exit nodes)`,
        `move "${d.text}" to a grant without "via"`)
    }
    return [...new Set(via)].sort()
  }

  /**
   * grantDestination reads one alias of a grant's `dst`: no ports (they are in `ip`), and,
   * as in Tailscale, not the whole address space, which `*` says.
   */
  private grantDestination (value: string, node: JsonNode): Selector | undefined {
    const cidr = parseCidr(value)
    if (cidr !== undefined && cidr.length === 0) {
      this.err(node, `dst "${value}": to allow all IP addresses, use "*" or "autogroup:internet"`)
      return undefined
    }
    const hp = cidr === undefined ? splitHostPort(value) : undefined
    if (hp !== undefined && parsePorts(hp.ports) !== undefined && !['tag', 'group', 'autogroup', 'user', 'ipset'].includes(hp.host)) {
      this.err(node, `dst "${value}" has ports, but a grant's destinations name only hosts: ports go in "ip"`, `write "dst": ["${hp.host}"], "ip": ["${hp.ports}"]`)
      return undefined
    }
    return this.selector(value, node, 'dst')
  }

  /**
   * allowAll is what a policy without "acls" or "grants" means in Tailscale: every node may
   * reach every other on every port (`"acls": []` denies everything). It is said as a warning, since a
   * policy that only defines groups or tags is easily taken for one that denies.
   */
  private allowAll (root: JsonNode): void {
    this.warn(root, 'this policy has no "acls" or "grants", so every node may reach every other on every port, as in Tailscale',
      'write "acls": [] to deny everything')
    const all = { selector: { kind: 'all' } as const, text: '*', pos: this.nodePos(root) }
    this.policy.acls.push({
      index: 0, pos: all.pos, text: '(no "acls": everyone may reach everyone)', src: [all], dst: [{ ...all, ports: [{ ...ALL_PORTS }], text: '*:*' }], protos: [...DEFAULT_PROTOS].sort((a, b) => a - b)
    })
  }

  private parseRule (item: JsonNode, index: number): PolicyRule | undefined {
    if (this.object(item, `acls[${index}]`) === undefined) return undefined
    const before = this.errors.length
    const where = `rule ${index + 1} (acls[${index}])`
    const keys = this.keys(item, where, RULE_KEYS, UNSUPPORTED_RULE, name =>
      `"${name}" in ${where} is not supported by Warren (grants syntax); remove it`)
    const action = keys.get('action')
    if (action === undefined) this.err(item, `${where} has no "action": add "action": "accept"`)
    else if (action.value !== 'accept') this.err(action, 'action must be "accept" (rules only allow; everything else is denied)')
    const srcNode = keys.get('src')
    const dstNode = keys.get('dst')
    if (srcNode === undefined) this.err(item, `${where} has no "src": add "src": ["..."]`)
    if (dstNode === undefined) this.err(item, `${where} has no "dst": add "dst": ["alias:ports"]`)
    let protos = [...DEFAULT_PROTOS]
    let protoText: string | undefined
    const protoNode = keys.get('proto')
    if (protoNode !== undefined) {
      const p = this.parseProtoNode(protoNode)
      if (p !== undefined) { protos = p; protoText = String(protoNode.value) }
    }
    const src = this.sources(srcNode)
    const dst: RuleDestination[] = []
    for (const { value, node } of dstNode === undefined ? [] : this.strings(dstNode, 'dst')) {
      const d = this.destination(value, node, protoText === undefined ? undefined : protos)
      if (d !== undefined) dst.push(d)
    }
    this.checkSelf(where, src, dst)
    const srcPosture = this.srcPosture(keys.get('srcPosture'), where)
    if (this.errors.length > before) return undefined
    const rule: PolicyRule = { index, pos: this.nodePos(item), text: this.oneLine(item), src, dst, protos: [...new Set(protos)].sort((a, b) => a - b) }
    if (protoText !== undefined) rule.protoText = protoText
    if (srcPosture !== undefined) rule.srcPosture = srcPosture
    return rule
  }

  /** srcPosture reads a rule's or grant's `srcPosture`: postures of which a source must meet one. */
  private srcPosture (n: JsonNode | undefined, where: string): string[] | undefined {
    return n === undefined ? undefined : parsePostureNames(n, `srcPosture of ${where}`, this.policy, this.reader)
  }

  /** sources reads a rule's or grant's `src` list. */
  private sources (srcNode: JsonNode | undefined): RuleSource[] {
    const src: RuleSource[] = []
    for (const { value, node } of srcNode === undefined ? [] : this.strings(srcNode, 'src')) {
      const selector = this.selector(value, node, 'src')
      if (selector !== undefined) src.push({ selector, text: value, pos: this.nodePos(node) })
    }
    return src
  }

  /** checkSelf: autogroup:self means the source user's own devices, so only sources that are users may reach it (as in Tailscale). */
  private checkSelf (where: string, src: readonly RuleSource[], dst: ReadonlyArray<{ selector: Selector, text: string }>, allowed = SELF_SOURCES): void {
    const self = dst.find(d => d.selector.kind === 'autogroup' && d.selector.name === 'self')
    if (self === undefined) return
    for (const x of src.filter(x => !allowed.includes(x.selector.kind === 'autogroup' ? `autogroup:${x.selector.name}` : x.selector.kind))) {
      this.errAt(x.pos.offset, `${where}: "${x.text}" cannot reach autogroup:self, which means the source user's own devices; ` +
        `its sources must be users, groups, autogroup:member${allowed.includes('all') ? ' or *' : ''}`, `move "${x.text}" to a rule without ${self.text}`)
    }
  }

  private parseProtoNode (n: JsonNode): number[] | undefined {
    if (n.type !== 'string' && n.type !== 'number') { this.err(n, 'proto must be a protocol name or number, for example "tcp" or "17"'); return undefined }
    const p = parseProto(n.value as string | number)
    if (p === undefined) {
      this.err(n, `unknown proto "${String(n.value)}": use a name (${Object.keys(PROTO_NAMES).join(', ')}) or an IANA number 0-255`,
        didYouMean(String(n.value), Object.keys(PROTO_NAMES)))
    }
    return p
  }

  private destination (value: string, node: JsonNode, protos: number[] | undefined): RuleDestination | undefined {
    const hp = splitHostPort(value)
    const bare = hp === undefined || ['tag', 'group', 'autogroup', 'ipset'].includes(hp.host) ? value : undefined
    if (hp === undefined || bare !== undefined || (parseCidr(value) !== undefined && parseCidr(hp.host) === undefined)) {
      const v6 = parseCidr(value)?.family === 6
      this.err(node, `dst "${value}" has no ports: write it as alias:ports`,
        v6 ? `for IPv6 write [${value}]:22 or [${value}]:*` : `for example ${value}:* or ${value}:22`)
      return undefined
    }
    const ports = parsePorts(hp.ports)
    if (ports === undefined) { this.err(node, `bad ports "${hp.ports}" in "${value}": ${PORTS_HELP}`); return undefined }
    if (protos !== undefined && !protos.some(protocolHasPorts) && hp.ports !== '*') {
      this.err(node, `"${value}": this rule's proto has no ports, so its destinations must use :*`, `write ${hp.host}:*`)
      return undefined
    }
    const selector = this.selector(hp.host, node, 'dst')
    if (selector === undefined) return undefined
    return { selector, ports, text: value, pos: this.nodePos(node) }
  }

  /** selector reads one alias of src or dst and checks that what it names is defined. */
  private selector (s: string, node: JsonNode, side: 'src' | 'dst'): Selector | undefined {
    if (s === '*') return { kind: 'all' }
    if (s.startsWith('group:')) {
      if (!this.policy.groups.has(s)) { this.err(node, `group ${s} is not defined in "groups"`, didYouMean(s, this.policy.groups.keys())); return undefined }
      return { kind: 'group', name: s }
    }
    if (s.startsWith('tag:')) return this.tagSelector(s, node)
    if (s.startsWith('autogroup:')) {
      if (s === 'autogroup:self') {
        if (side === 'src') { this.err(node, 'autogroup:self can only be used as a destination (it means the source user\'s own devices)', 'use autogroup:member in src'); return undefined }
        return { kind: 'autogroup', name: 'self' }
      }
      if (s === 'autogroup:member') return { kind: 'autogroup', name: 'member' }
      if (s === 'autogroup:members') {
        this.warn(node, 'autogroup:members is the legacy name of autogroup:member', 'write autogroup:member')
        return { kind: 'autogroup', name: 'member' }
      }
      if (s === 'autogroup:tagged') return { kind: 'autogroup', name: 'tagged' }
      if (s === 'autogroup:internet') {
        if (side === 'dst') return { kind: 'autogroup', name: 'internet' }
        this.err(node, 'autogroup:internet can only be used as a destination (the internet through an exit node)', 'use * or autogroup:member in src')
        return undefined
      }
      if (ROLE_AUTOGROUPS.includes(s)) {
        if (side === 'src') return { kind: 'role', role: s.slice('autogroup:'.length) as UserRole }
        this.err(node, `${s} can only be a source: it names the users with that role, not devices to reach`, 'name their devices by user, group or tag in dst')
        return undefined
      }
      if (s === 'autogroup:danger-all') {
        if (side === 'src') return { kind: 'any-address' }
        this.err(node, 'cannot use autogroup:danger-all as a destination: it means every address, so it is only a source', 'use * for every node')
        return undefined
      }
      this.err(node, `${s} is not supported; Warren knows ${AUTOGROUPS.join(', ')}`, didYouMean(s, AUTOGROUPS))
      return undefined
    }
    const domain = /^user:\*@([a-z0-9]([a-z0-9.-]*[a-z0-9])?)$/i.exec(s)?.[1]
    if (domain !== undefined) return { kind: 'domain', domain: domain.toLowerCase() }
    if (s.includes('@')) {
      if (!isUserToken(s)) { this.err(node, `"${s}" is not a user: write alice@, alice@example.com or user:*@example.com (every user of a domain)`); return undefined }
      this.userUses.push({ token: s, node })
      return { kind: 'user', token: s.toLowerCase() }
    }
    if (s.startsWith('ipset:')) {
      const set = this.policy.ipsets.get(s)
      if (set === undefined) { this.err(node, `IP set ${s} is not defined in "ipsets"`, didYouMean(s, this.policy.ipsets.keys())); return undefined }
      return { kind: 'ipset', name: s, cidrs: set.cidrs }
    }
    if (/^(svc|service):/.test(s)) {
      this.err(node, `${s}: services are not supported by Warren; name addresses in "hosts" or use CIDRs`)
      return undefined
    }
    const host = this.policy.hosts.get(s)
    if (host !== undefined) return { kind: 'host', name: s, cidr: host.cidr }
    const cidr = parseCidr(s)
    if (cidr !== undefined) return { kind: 'cidr', cidr }
    this.err(node, `"${s}" is not a known alias: not a host in "hosts", a user (alice@), group:, tag:, autogroup: or an IP/CIDR`,
      this.userGuess(s) ?? didYouMean(s, this.policy.hosts.keys()))
    return undefined
  }

  private tagSelector (s: string, node: JsonNode): Selector | undefined {
    if (!isPolicyTag(s)) { this.err(node, `"${s}" is not a valid tag: use tag: and a name of letters, digits and inner hyphens that starts with a letter`); return undefined }
    if (!this.policy.tagOwners.has(s)) {
      this.err(node, `tag ${s} has no entry in "tagOwners"; every tag needs owners (use [] if only auth keys grant it)`,
        didYouMean(s, this.policy.tagOwners.keys()))
      return undefined
    }
    return { kind: 'tag', name: s }
  }

  private userGuess (s: string): string | undefined {
    if (this.users === undefined) return undefined
    const bare = s.replace(/@.*$/, '').toLowerCase()
    if (this.users.some(u => u.name.toLowerCase() === bare)) return `did you mean ${bare}@?`
    return undefined
  }

  private parseTests (section: JsonNode): void {
    const items = this.array(section, 'tests') ?? []
    items.forEach((item, index) => {
      if (this.object(item, `tests[${index}]`) === undefined) return
      const before = this.errors.length
      const where = `test ${index + 1} (tests[${index}])`
      const keys = this.keys(item, where, TEST_KEYS, UNSUPPORTED_TEST, name => `"${name}" in ${where} is not supported by Warren; remove it`)
      const srcNode = keys.get('src')
      let src = ''
      let srcPos = this.nodePos(item)
      if (srcNode === undefined) this.err(item, `${where} has no "src": add "src": "alice@"`)
      else {
        const value = this.string(srcNode, 'a test\'s src')
        srcPos = this.nodePos(srcNode)
        if (value === '') this.err(srcNode, `${where} has an empty "src": name a user (alice@), a tag, a host alias or an IP`)
        else if (value !== undefined && this.identity(value, srcNode, 'src')) src = value
      }
      let protos = [6]
      let protoText: string | undefined
      const protoNode = keys.get('proto')
      if (protoNode !== undefined) {
        const p = this.parseProtoNode(protoNode)
        if (p !== undefined) { protos = p; protoText = String(protoNode.value) }
      }
      const cases = (name: 'accept' | 'deny'): PolicyTestCase[] => {
        const n = keys.get(name)
        if (n === undefined) return []
        const out: PolicyTestCase[] = []
        for (const { value, node } of this.strings(n, name)) {
          const hp = splitHostPort(value)
          const port = hp === undefined ? undefined : /^\d{1,5}$/.test(hp.ports) ? Number(hp.ports) : undefined
          if (hp === undefined || port === undefined || port > 65535) {
            this.err(node, `"${value}" must be a destination and one port, like tag:web:443, alice@:22 or [fd7a::1]:80`)
            continue
          }
          if (this.identity(hp.host, node, 'target')) out.push({ target: hp.host, port, text: value, pos: this.nodePos(node) })
        }
        return out
      }
      const accept = cases('accept')
      const deny = cases('deny')
      const attrsNode = keys.get('srcPostureAttrs')
      const srcAttrs = attrsNode === undefined ? undefined : parseTestAttrs(attrsNode, this.reader)
      if (keys.get('accept') === undefined && keys.get('deny') === undefined) this.err(item, `${where} has neither "accept" nor "deny"`)
      if (this.errors.length > before) return
      const test: PolicyTest = { index, pos: this.nodePos(item), src, srcPos, protos, accept, deny }
      if (protoText !== undefined) test.protoText = protoText
      if (srcAttrs !== undefined) test.srcAttrs = srcAttrs
      this.policy.tests.push(test)
    })
  }

  /**
   * identity checks a test's source or target: one user, tag, host alias or address (a
   * source may also be a group: the test then holds for each member). A range is not one
   * address, so CIDRs and host aliases of ranges are refused, as Tailscale does.
   */
  private identity (s: string, node: JsonNode, role: 'src' | 'target'): boolean {
    if (role === 'src' && s.startsWith('group:')) {
      if (this.policy.groups.has(s)) return true
      this.err(node, `group ${s} is not defined in "groups"`, didYouMean(s, this.policy.groups.keys()))
      return false
    }
    if (s.startsWith('group:') || s.startsWith('autogroup:') || s === '*') {
      this.err(node, `tests name one identity, not ${s}: use a user (alice@), a tag, a host alias or an IP${role === 'src' ? ' (or a group)' : ''}`)
      return false
    }
    if (s.startsWith('tag:')) return this.tagSelector(s, node) !== undefined
    if (s.includes('@')) {
      if (!isUserToken(s)) { this.err(node, `"${s}" is not a user: write alice@ or alice@example.com`); return false }
      this.userUses.push({ token: s, node })
      return true
    }
    const range = this.policy.hosts.get(s)?.cidr ?? parseCidr(s)
    if (range === undefined) {
      this.err(node, `"${s}" is not a user (alice@), tag, host alias or IP`, this.userGuess(s) ?? didYouMean(s, this.policy.hosts.keys()))
      return false
    }
    if (s.includes('/') || range.length < (range.family === 4 ? 32 : 128)) {
      this.err(node, `tests name one address, not the range ${s === range.text ? s : `${s} (${range.text})`}: write a single address such as ${range.text.replace(/\/\d+$/, '')}`)
      return false
    }
    return true
  }

  private checkUsers (): void {
    if (this.users === undefined) return
    const dir = createUserDirectory(this.users)
    const warned = new Set<string>()
    let last: JsonNode | undefined
    for (const { token, node } of this.userUses) {
      const t = token.toLowerCase()
      if (warned.has(t) || dir.resolve(t).known) continue
      warned.add(t)
      last = node
      if (warned.size > MAX_USER_WARNINGS) continue
      const hint = t.endsWith('@') ? undefined : this.userGuess(t)
      this.warn(node, `user ${t} does not exist yet; rules naming it match no device until that user is created`, hint)
    }
    if (warned.size > MAX_USER_WARNINGS) {
      this.warn(last!, `and ${warned.size - MAX_USER_WARNINGS} more users that do not exist yet (${MAX_USER_WARNINGS} are listed)`)
    }
  }
}
