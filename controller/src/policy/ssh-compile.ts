import { IpProto } from '@warren/protocol'
import { SELF_KEY, compilePolicy, nodeSubject, type CompiledPolicy, type CompiledRule, type Subject } from './compile-policy.js'
import { localpartDomain } from './ssh-parse.js'
import type { Policy, PolicyNode, PolicyRule, PolicyUser, SshNodeRule, SshPolicyRule } from './types.js'

/** SSH_PORT: an ssh rule is compiled as a rule to TCP port 22, so its selectors resolve as every rule's do. */
const SSH_PORT = 22

/** CompiledSsh is the policy's ssh rules with their selectors resolved against the users. */
export interface CompiledSsh {
  cp: CompiledPolicy
  rules: Array<{ rule: SshPolicyRule, compiled: CompiledRule }>
}

/**
 * compileSsh resolves the ssh rules' sources and destinations the way acls and grants
 * are resolved (groups, user:*@domain, autogroup:self), by compiling them as rules to
 * TCP port 22 of a policy that holds nothing else.
 */
export function compileSsh (policy: Policy, users: readonly PolicyUser[]): CompiledSsh {
  const ssh = policy.ssh ?? []
  const acls = ssh.map((r): PolicyRule => ({
    index: r.index, pos: r.pos, text: r.text, src: r.src, protos: [IpProto.TCP],
    dst: r.dst.map(d => ({ ...d, ports: [{ first: SSH_PORT, last: SSH_PORT }] }))
  }))
  const cp = compilePolicy({ ...policy, acls, grants: [] }, users)
  return { cp, rules: ssh.map((rule, i) => ({ rule, compiled: cp.rules[i]! })) }
}

/** sourceMatches: is the subject one of the rule's sources? */
export function sourceMatches (compiled: CompiledRule, subject: Subject): boolean {
  return compiled.srcKeys.some(k => subject.keys.has(k))
}

/**
 * sshUsersMap is the login-name map every node of a rule gets (tailcfg.SSHRule.SSHUsers):
 * `*` -> `=` for autogroup:nonroot, `root` -> `root` when root is listed and `root` -> ``
 * (refused) otherwise, and each literal name to itself. `localpart:*@domain` adds a rule
 * of its own per user (localpartsOf).
 */
export function sshUsersMap (names: readonly string[]): Record<string, string> {
  const map = new Map<string, string>()
  if (names.includes('autogroup:nonroot')) map.set('*', '=')
  map.set('root', names.includes('root') ? 'root' : '')
  for (const n of names) if (n !== 'root' && n !== 'autogroup:nonroot' && localpartDomain(n) === undefined) map.set(n, n)
  // fromEntries defines own properties, so a login name such as __proto__ stays a name
  return Object.fromEntries(map)
}

/** localpartsOf maps each user (lowercase name) whose email is in a `localpart:*@domain` domain to the part before the @. */
export function localpartsOf (names: readonly string[], users: readonly PolicyUser[]): Map<string, string> {
  const domains = new Set(names.flatMap(n => localpartDomain(n) ?? []).map(d => d.toLowerCase()))
  const out = new Map<string, string>()
  for (const u of users) {
    const at = u.email?.lastIndexOf('@') ?? -1
    if (u.email === undefined || at < 0 || !domains.has(u.email.slice(at + 1).toLowerCase())) continue
    out.set(u.name.toLowerCase(), u.email.slice(0, at))
  }
  return out
}

/** loginAllowed: does the rule's map let `login` in (an exact entry first, then `*`)? */
export function loginAllowed (map: Readonly<Record<string, string>>, login: string): boolean {
  const local = Object.hasOwn(map, login) ? map[login] : map['*']
  return local !== undefined && local !== ''
}

/** actionFirst orders rules as a node checks them: every `check` rule before the `accept` rules, each kind in file order. */
export function actionFirst<T extends { action: string }> (rules: readonly T[]): T[] {
  return [...rules.filter(r => r.action === 'check'), ...rules.filter(r => r.action !== 'check')]
}

/**
 * compileSshPolicy computes, for every node, the SSH rules it would enforce, in the form
 * and order Tailscale sends them (checked against Tailscale's own answers in the
 * conformance corpus): for each ssh rule that names the node as a destination, one rule
 * whose principals are the source nodes' addresses. With `localpart:*@domain` the
 * sources are split per user (in the order of `users`), each followed by a rule that
 * lets that user log in as their email's local part, tagged sources last; and, as
 * Tailscale does, a source node that is no destination then gets those rules for itself.
 * `check` rules come before `accept` rules. Warren has no SSH server, so nothing
 * enforces these yet.
 */
export function compileSshPolicy (policy: Policy, users: readonly PolicyUser[], nodes: readonly PolicyNode[]): Map<string, SshNodeRule[]> {
  const out = new Map<string, SshNodeRule[]>(nodes.map(n => [n.id, []]))
  if ((policy.ssh ?? []).length === 0) return out
  const { cp, rules } = compileSsh(policy, users)
  const subjects = nodes.map(node => ({ node, subject: nodeSubject(cp, node) }))
  const order = new Map(users.map((u, i) => [u.name.toLowerCase(), i]))
  for (const { rule, compiled } of rules) {
    const sources = subjects.filter(s => sourceMatches(compiled, s.subject))
    if (sources.length === 0) continue
    const byUser = new Map<string, PolicyNode[]>()
    for (const s of sources) if (s.node.tags.length === 0 && s.subject.user !== undefined) byUser.set(s.subject.user, [...(byUser.get(s.subject.user) ?? []), s.node])
    const userOrder = [...byUser.keys()].sort((a, b) => (order.get(a) ?? Infinity) - (order.get(b) ?? Infinity) || a.localeCompare(b))
    const tagged = sources.filter(s => s.node.tags.length > 0).map(s => s.node)
    const base = sshUsersMap(rule.users)
    const hasLocalpart = rule.users.some(n => localpartDomain(n) !== undefined)
    const localparts = localpartsOf(rule.users, users)
    const make = (principals: readonly PolicyNode[], sshUsers: Record<string, string>): SshNodeRule => {
      const r: SshNodeRule = { rule: rule.index, principals: principals.flatMap(n => [n.ipv4, n.ipv6]), sshUsers, action: rule.action }
      if (rule.checkPeriodSeconds !== undefined) r.checkPeriodSeconds = rule.checkPeriodSeconds
      if (rule.acceptEnv !== undefined) r.acceptEnv = [...rule.acceptEnv]
      return r
    }
    const emit = (list: SshNodeRule[], principals: readonly PolicyNode[], user?: string): void => {
      if (principals.length === 0) return
      list.push(make(principals, base))
      const local = user === undefined ? undefined : localparts.get(user)
      if (local !== undefined) list.push(make(principals, Object.fromEntries([[local, local]])))
    }
    const self = compiled.dsts.some(d => d.key === SELF_KEY)
    const others = compiled.dsts.filter(d => d.key !== SELF_KEY)
    for (const { node, subject } of subjects) {
      const list = out.get(node.id)!
      const own = node.tags.length === 0 ? subject.user : undefined
      if (self && own !== undefined) emit(list, byUser.get(own) ?? [], own)
      if (others.length === 0) continue
      if (others.some(d => subject.keys.has(d.key))) {
        if (!hasLocalpart) emit(list, sources.map(s => s.node))
        else {
          for (const u of userOrder) emit(list, byUser.get(u)!, u)
          emit(list, tagged)
        }
      } else if (hasLocalpart && sources.some(s => s.node.id === node.id)) {
        if (node.tags.length > 0) emit(list, [node])
        else if (own !== undefined) emit(list, byUser.get(own) ?? [], own)
      }
    }
  }
  for (const [id, list] of out) out.set(id, actionFirst(list))
  return out
}
