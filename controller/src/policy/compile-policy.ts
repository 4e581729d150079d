import { WarrenError, protocolHasPorts, type CapMap } from '@warren/protocol'
import { DEFAULT_MESH_IPV6, cidrContains, hostCidr, meshSources, parseCidr } from './addr.js'
import { didYouMean } from './errors.js'
import { mergeRanges } from './build-filter.js'
import { parseProto } from './parse.js'
import type { CompiledNodeAttrs } from './node-attrs.js'
import { createUserDirectory, expandIdpGroups, isUserToken, rolesOf, type UserDirectory } from './users.js'
import { postureKey, postureKeys, rulePostures } from './posture-keys.js'
import type { PostureAttrs, PostureDef } from './posture.js'
import { viaKey } from './via.js'
import { policyRules, type Cidr, type Policy, type PolicyIdentity, type PolicyNode, type PolicyUser, type PortRange, type Selector } from './types.js'

/**
 * Selector keys name sets of identities once users are known: `*`, `user:<name>`,
 * `group:<name>`, `tag:<tag>`, `ag:member`, `ag:tagged`, `cidr:<range>`. A group is one
 * key, resolved once: a user's identity carries the keys of the groups it is in, so a
 * group named by many rules costs one key per rule, not one per member per rule.
 * Nodes and identities carry the keys they match, so matching is set lookups.
 */
export const SELF_KEY = 'self'

/**
 * ROUTES_KEY marks the nodes that serve approved subnet routes. `*` as a source stands
 * for the mesh's ranges and those routes (as in Tailscale), so a rule with `*` lists this
 * key among its node keys, and a router's routes go into its filters.
 */
export const ROUTES_KEY = 'routes'

/** domainKey is the key of `user:*@<domain>`. */
function domainKey (domain: string): string {
  return `domain:${domain}`
}

/** ANY_ADDRESS is what autogroup:danger-all sends from: every IPv4 and IPv6 address. */
const ANY_ADDRESS: readonly Cidr[] = [parseCidr('0.0.0.0/0')!, parseCidr('::/0')!]

/** CompiledRule is one rule with its selectors turned into keys. */
export interface CompiledRule {
  index: number
  line: number
  text: string
  protos: number[]
  /** srcKeys: every key whose members are sources (used for peers and for check) */
  srcKeys: string[]
  /** srcNodeKeys: keys that stand for identities, so their nodes' addresses (ROUTES_KEY: routes) go into filters */
  srcNodeKeys: string[]
  /** srcCidrs: address ranges that go into filters as written (hosts, IPs; the mesh's ranges for `*`) */
  srcCidrs: Cidr[]
  /**
   * dsts: destination keys (SELF_KEY for autogroup:self) with merged ports; `family` is
   * that of a host or CIDR destination, which only sources of the same family can reach
   */
  dsts: Array<{ key: string, ports: PortRange[], family?: 4 | 6 }>
  /** caps: the capabilities a grant's `app` gives (the rule then lets no traffic in) */
  caps?: CapMap
}

export interface CompiledPolicy {
  policy: Policy
  rules: CompiledRule[]
  /** cidrs: every range a selector names, by key, so nodes can be matched against them */
  cidrs: Map<string, Cidr>
  /** groupsOf: a user's key (`user:<name>`) -> the keys of the groups it is a member of */
  groupsOf: Map<string, string[]>
  users: UserDirectory
  /** nodeAttrs: the policy's nodeAttrs entries with their targets as keys */
  nodeAttrs: CompiledNodeAttrs[]
  /** postures: the postures some rule asks of its sources, which nodes' attributes are held to */
  postures: Map<string, PostureDef>
}

/**
 * compilePolicy resolves a parsed policy against the current users; `meshIpv6` is the
 * mesh's IPv6 /48, part of what `*` means as a source.
 */
export function compilePolicy (policy: Policy, users: readonly PolicyUser[], meshIpv6 = DEFAULT_MESH_IPV6): CompiledPolicy {
  const mesh = meshSources(meshIpv6)
  const dir = createUserDirectory(users)
  const cidrs = new Map<string, Cidr>()
  const groupsOf = new Map<string, string[]>()
  for (const [name, group] of policy.groups) {
    for (const member of new Set(expandIdpGroups(group.members, users).map(m => `user:${dir.resolve(m).name}`))) {
      const list = groupsOf.get(member)
      if (list === undefined) groupsOf.set(member, [name])
      else list.push(name)
    }
  }
  // a domain (`user:*@example.com`) is a group whose members are the users with such an email,
  // and a role (autogroup:admin) one whose members are the users with that role
  for (const u of users) {
    const domain = u.email?.toLowerCase().split('@')[1]
    const member = `user:${u.name.toLowerCase()}`
    const extra = [...(domain === undefined ? [] : [domainKey(domain)]), ...rolesOf(u).map(r => `ag:${r}`)]
    if (extra.length > 0) groupsOf.set(member, [...(groupsOf.get(member) ?? []), ...extra])
  }
  const postures = new Map<string, PostureDef>()
  const keyOf = (sel: Exclude<Selector, { kind: 'ipset' }>): string => {
    switch (sel.kind) {
      case 'all':
      case 'any-address': return '*'
      case 'user': return `user:${dir.resolve(sel.token).name}`
      case 'group': return sel.name
      case 'domain': return domainKey(sel.domain)
      case 'tag': return sel.name
      case 'autogroup': return sel.name === 'self' ? SELF_KEY : `ag:${sel.name}`
      case 'role': return `ag:${sel.role}`
      case 'host':
      case 'cidr': {
        const key = `cidr:${sel.cidr.text}`
        cidrs.set(key, sel.cidr)
        return key
      }
    }
  }
  const rules = policyRules(policy).map((r): CompiledRule => {
    const srcKeys = new Set<string>()
    const srcNodeKeys = new Set<string>()
    const srcCidrs = new Map<string, Cidr>()
    for (const selector of r.src.flatMap(s => ipsetCidrs(s.selector))) {
      const key = keyOf(selector)
      srcKeys.add(key)
      if (selector.kind === 'all') {
        for (const c of mesh) srcCidrs.set(c.text, c)
        srcNodeKeys.add(ROUTES_KEY)
      } else if (selector.kind === 'any-address') {
        for (const c of ANY_ADDRESS) srcCidrs.set(c.text, c)
      } else if (selector.kind === 'host' || selector.kind === 'cidr') srcCidrs.set(selector.cidr.text, selector.cidr)
      else srcNodeKeys.add(key)
    }
    // with postures, only nodes that meet one are sources: each key becomes key|posture,
    // which only such nodes carry, and no range is a source as written
    const wanted = rulePostures(policy, r)
    if (wanted.length > 0) {
      for (const p of wanted) postures.set(p, policy.postures.get(p)!)
      const keys = [...srcKeys]
      srcKeys.clear()
      srcNodeKeys.clear()
      srcCidrs.clear()
      for (const k of keys) for (const p of wanted) { srcKeys.add(postureKey(k, p)); srcNodeKeys.add(postureKey(k, p)) }
    }
    const dsts = new Map<string, PortRange[]>()
    for (const d of r.dst) {
      for (const sel of ipsetCidrs(d.selector)) {
        const key = r.via === undefined ? keyOf(sel) : viaKey(keyOf(sel), r.via)
        if (r.via !== undefined && (sel.kind === 'host' || sel.kind === 'cidr')) cidrs.set(key, sel.cidr)
        dsts.set(key, [...(dsts.get(key) ?? []), ...d.ports])
      }
    }
    return {
      ...(r.caps !== undefined ? { caps: r.caps } : {}),
      index: r.index,
      line: r.pos.line,
      text: r.text,
      protos: r.protos,
      srcKeys: [...srcKeys],
      srcNodeKeys: [...srcNodeKeys],
      srcCidrs: [...srcCidrs.values()],
      dsts: [...dsts].map(([key, ports]) => {
        const family = cidrs.get(key)?.family
        return family === undefined ? { key, ports: mergeRanges(ports) } : { key, ports: mergeRanges(ports), family }
      })
    }
  })
  const nodeAttrs = policy.nodeAttrs.map(e => ({ keys: e.targets.flatMap(ipsetCidrs).map(keyOf), attrs: e.attrs }))
  return { policy, rules, cidrs, groupsOf, users: dir, nodeAttrs, postures }
}

/** ipsetCidrs: an IP set stands for its CIDRs, each as if written on its own; other selectors stand for themselves. */
function ipsetCidrs (sel: Selector): Array<Exclude<Selector, { kind: 'ipset' }>> {
  return sel.kind === 'ipset' ? sel.cidrs.map(cidr => ({ kind: 'cidr', cidr })) : [sel]
}

/**
 * Subject is a resolved identity: the keys it matches, its user when it is a user's
 * (untagged) identity, and the addresses it stands for.
 */
export interface Subject {
  label: string
  keys: Set<string>
  user?: string
  addrs: Cidr[]
}

/**
 * subjectKeys lists the keys that an identity with this user, tags and addresses matches;
 * with its device's attributes, also `key|posture` for every posture they meet.
 */
export function subjectKeys (cp: CompiledPolicy, user: string | undefined, tags: readonly string[], addrs: readonly Cidr[], attrs?: PostureAttrs): Set<string> {
  const keys = new Set<string>(['*'])
  if (tags.length > 0) {
    keys.add('ag:tagged')
    for (const t of tags) keys.add(t)
  } else if (user !== undefined) {
    keys.add('ag:member')
    keys.add(`user:${user}`)
    for (const group of cp.groupsOf.get(`user:${user}`) ?? []) keys.add(group)
  }
  if (addrs.length > 0) {
    for (const [key, cidr] of cp.cidrs) if (addrs.some(a => cidrContains(cidr, a))) keys.add(key)
  }
  return cp.postures.size === 0 ? keys : postureKeys(cp.postures, keys, attrs)
}

/** nodeSubject is a node as an identity: its user or tags, and both its addresses. */
export function nodeSubject (cp: CompiledPolicy, n: PolicyNode, addrs = [hostCidr(n.ipv4), hostCidr(n.ipv6)]): Subject {
  const user = n.tags.length === 0 && n.user !== undefined ? n.user.toLowerCase() : undefined
  const s: Subject = { label: n.name, keys: subjectKeys(cp, user, n.tags, addrs, n.postureAttrs), addrs }
  if (user !== undefined) s.user = user
  return s
}

/**
 * resolveSubject turns what a person writes (`alice@`, `alice@example.com`, `tag:web`,
 * a host alias, an IP, a node name when nodes are given) or an identity object into a
 * Subject. An IP that belongs to a known node stands for that node.
 */
export function resolveSubject (cp: CompiledPolicy, who: string | PolicyIdentity, nodes: readonly PolicyNode[] = []): Subject {
  if (typeof who !== 'string') {
    const addrs = (who.ips ?? []).map(ip => {
      const c = parseCidr(ip)
      if (c === undefined) throw new WarrenError('policy_bad_identity', `"${ip}" is not an IP address or CIDR`)
      return c
    })
    const tags = who.tags ?? []
    const user = tags.length === 0 && who.user !== undefined ? cp.users.resolve(who.user).name : undefined
    const label = tags.length > 0 ? tags.join(',') : who.user ?? who.ips?.join(',') ?? '?'
    const s: Subject = { label, keys: subjectKeys(cp, user, tags, addrs, who.attrs), addrs }
    if (user !== undefined) s.user = user
    return s
  }
  const policy = cp.policy
  if (who.startsWith('tag:')) {
    if (!policy.tagOwners.has(who)) {
      throw new WarrenError('policy_bad_identity', `tag ${who} is not in the policy's tagOwners`, { field: 'tag' })
    }
    return { label: who, keys: subjectKeys(cp, undefined, [who], []), addrs: [] }
  }
  if (who.includes('@')) {
    if (!isUserToken(who)) throw new WarrenError('policy_bad_identity', `"${who}" is not a user: write alice@ or alice@example.com`)
    const user = cp.users.resolve(who).name
    return { label: who, keys: subjectKeys(cp, user, [], []), user, addrs: [] }
  }
  const host = policy.hosts.get(who)
  if (host !== undefined) return { label: who, keys: subjectKeys(cp, undefined, [], [host.cidr]), addrs: [host.cidr] }
  const byName = nodes.find(n => n.name === who)
  if (byName !== undefined) return nodeSubject(cp, byName)
  const cidr = parseCidr(who)
  if (cidr !== undefined) {
    const node = nodes.find(n => hostCidr(n.ipv4).text === cidr.text || hostCidr(n.ipv6).text === cidr.text)
    if (node !== undefined) return { ...nodeSubject(cp, node, [cidr]), label: `${node.name} (${who})` }
    return { label: who, keys: subjectKeys(cp, undefined, [], [cidr]), addrs: [cidr] }
  }
  if (who.startsWith('group:') || who.startsWith('autogroup:') || who === '*') {
    throw new WarrenError('policy_bad_identity', `${who} is a set, not one identity: name a user (alice@), a tag, a host alias or an IP`)
  }
  const known = cp.users.names().includes(who.toLowerCase()) ? `did you mean ${who.toLowerCase()}@?` : didYouMean(who, [...policy.hosts.keys(), ...nodes.map(n => n.name)])
  throw new WarrenError('policy_bad_identity',
    `"${who}" is not a user (alice@), tag, host alias${nodes.length > 0 ? ', node name' : ''} or IP${known === undefined ? '' : ` (${known})`}`)
}

/** ruleAllows says whether one compiled rule lets `src` reach `dst` with proto and port. */
export function ruleAllows (r: CompiledRule, src: Subject, dst: Subject, proto: number, port: number): boolean {
  if (!r.protos.includes(proto)) return false
  if (!r.srcKeys.some(k => src.keys.has(k))) return false
  return r.dsts.some(d => destinationAllows(d, src, dst, proto, port))
}

/** destinationAllows says whether one destination of a rule (whose protocol and source match) covers `dst` on proto/port. */
export function destinationAllows (d: CompiledRule['dsts'][number], src: Subject, dst: Subject, proto: number, port: number): boolean {
  return (!protocolHasPorts(proto) || d.ports.some(p => port >= p.first && port <= p.last)) && destinationReached(d, src, dst)
}

/** destinationReached: does one of a rule's destinations cover `dst`, for a source of a family it can reach? */
export function destinationReached (d: CompiledRule['dsts'][number], src: Subject, dst: Subject): boolean {
  return destinationMatches(d.key, src, dst) && (d.family === undefined || src.addrs.length === 0 || src.addrs.some(a => a.family === d.family))
}

/** destinationMatches: does a destination key cover `dst` (autogroup:self: the source user's own identity)? */
export function destinationMatches (key: string, src: Subject, dst: Subject): boolean {
  if (key === SELF_KEY) return src.user !== undefined && src.user === dst.user
  return dst.keys.has(key)
}

/** CheckResult: whether the flow is allowed, and by which rules (index from 0, file line). */
export interface CheckResult {
  allowed: boolean
  rules: Array<{ index: number, line: number }>
}

/** checkCompiled evaluates a flow between two subjects against every rule. */
export function checkCompiled (cp: CompiledPolicy, src: Subject, dst: Subject, proto: number, port: number): CheckResult {
  // a grant compiles to a rule per set of protocols, all with its number: each is listed once
  const byIndex = new Map(cp.rules.filter(r => ruleAllows(r, src, dst, proto, port)).map(r => [r.index, { index: r.index, line: r.line }]))
  return { allowed: byIndex.size > 0, rules: [...byIndex.values()] }
}

/** protoNumber reads a proto argument (name or number); TCP when omitted. */
export function protoNumber (proto: string | number | undefined): number {
  if (proto === undefined) return 6
  const p = parseProto(proto)
  if (p === undefined || p.length === 0) {
    throw new WarrenError('policy_bad_proto', `unknown proto "${String(proto)}": use a name such as tcp, udp, icmp or an IANA number 0-255`, { field: 'proto' })
  }
  return p[0]!
}

/** CheckOptions gives what identities are resolved against: users and, for IPs and node names, nodes. */
export interface CheckOptions {
  users?: readonly PolicyUser[]
  nodes?: readonly PolicyNode[]
}

/**
 * check answers whether the policy lets `src` reach `dst` on proto/port, on identities
 * (users, tags, host aliases, IPs), so it holds before any device has joined. The
 * matching rules are listed; `proto` is a name or number (`icmp` means ICMPv4 here).
 */
export function check (policy: Policy, src: string | PolicyIdentity, dst: string | PolicyIdentity,
  proto: string | number | undefined, port: number, opts: CheckOptions = {}): CheckResult {
  const cp = compilePolicy(policy, opts.users ?? [])
  return checkCompiled(cp, resolveSubject(cp, src, opts.nodes), resolveSubject(cp, dst, opts.nodes), protoNumber(proto), port)
}
