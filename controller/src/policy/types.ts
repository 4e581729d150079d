import type { CapMap, IpPrefix, PostureValue, UserRole } from '@warren/protocol'

/** SourcePos is where something stands in the policy file (1-based line and column). */
export interface SourcePos {
  line: number
  column: number
  offset: number
  length: number
}

/**
 * Cidr is one address range, parsed once (protocol's IpPrefix); `text` is its canonical
 * form (`100.64.0.1/32`) and `sortKey` orders ranges: family, then address, then length.
 */
export interface Cidr extends IpPrefix {
  text: string
  sortKey: string
}

/**
 * Selector is one entry of a rule's `src` or `dst` as written: what it names, before
 * users and nodes are known.
 */
export type Selector =
  | { kind: 'all' }
  | { kind: 'user', token: string }
  | { kind: 'group', name: string }
  | { kind: 'tag', name: string }
  | { kind: 'host', name: string, cidr: Cidr }
  | { kind: 'cidr', cidr: Cidr }
  | { kind: 'autogroup', name: 'member' | 'tagged' | 'self' }
  /** autogroup:internet: the internet through an exit node (destinations only) */
  | { kind: 'autogroup', name: 'internet' }
  /** autogroup:admin, autogroup:owner, ...: the users with that role (sources only) */
  | { kind: 'role', role: UserRole }
  /** `user:*@example.com`: every user whose email is in that domain */
  | { kind: 'domain', domain: string }
  /** autogroup:danger-all: every address, inside the mesh or not (sources only) */
  | { kind: 'any-address' }
  /** `ipset:name`: the addresses of an IP set, as CIDRs */
  | { kind: 'ipset', name: string, cidrs: Cidr[] }

/** PostureOp is a posture condition's operator. */
export type PostureOp = '==' | '!=' | '<' | '<=' | '>' | '>=' | 'IN' | 'NOT IN' | 'IS SET' | 'NOT SET'

/** PostureCondition is one parsed posture condition: an attribute, an operator and its value(s). */
export interface PostureCondition { attr: string, op: PostureOp, values: PostureValue[], text: string }

/** PostureDef is one entry of `postures` (controller/src/policy/posture.ts reads and evaluates them). */
export interface PostureDef { conditions: PostureCondition[], pos: SourcePos }

/** PortRange is an inclusive range of ports, as on the wire. */
export interface PortRange { first: number, last: number }

export interface RuleSource { selector: Selector, text: string, pos: SourcePos }
export interface RuleDestination { selector: Selector, ports: PortRange[], text: string, pos: SourcePos }

/**
 * PolicyRule is one entry of `acls`, or a part of a grant. `index` counts from 0 in file
 * order, acls first, then grants.
 */
export interface PolicyRule {
  index: number
  pos: SourcePos
  /** text is the rule as written, on one line */
  text: string
  src: RuleSource[]
  dst: RuleDestination[]
  /** protos are IANA protocol numbers, sorted */
  protos: number[]
  /** protoText is `proto` as written, absent when omitted */
  protoText?: string
  /** caps: a grant's `app`; such a rule gives these capabilities and no traffic (`protos` is empty) */
  caps?: CapMap
  /** via: a grant's `via` tags, the only subnet routers its destinations are reached through */
  via?: string[]
  /** srcPosture: the postures of which a source node must meet one (absent: the policy's defaultSrcPosture) */
  srcPosture?: string[]
}

/** PolicyTestCase is one `host:port` of a test's accept or deny list. */
export interface PolicyTestCase { target: string, port: number, text: string, pos: SourcePos }

/** PolicyTest is one entry of `tests`. */
export interface PolicyTest {
  index: number
  pos: SourcePos
  src: string
  srcPos: SourcePos
  protos: number[]
  protoText?: string
  accept: PolicyTestCase[]
  deny: PolicyTestCase[]
  /** srcAttrs: the source's posture attributes (`srcPostureAttrs`), absent when not given */
  srcAttrs?: Record<string, PostureValue>
}

/**
 * AutoApprovers is the policy's `autoApprovers`: who may have which advertised routes
 * approved at once (users as `name@` or email, groups, tags, autogroup:member), and who
 * may be an exit node.
 */
export interface AutoApprovers {
  routes: Array<{ cidr: Cidr, approvers: string[] }>
  exitNode: string[]
}

/**
 * NodeAttrsEntry is one entry of `nodeAttrs`: the nodes its `target` names get its
 * attributes (`attr` names, and `app` capabilities with their values).
 */
export interface NodeAttrsEntry {
  pos: SourcePos
  targets: Selector[]
  /** attrs: attribute name -> values (empty for a plain `attr`, the JSON values of an `app` capability) */
  attrs: Map<string, unknown[]>
}

/** IpSet is one entry of `ipsets`: the addresses its operations leave, as the fewest CIDRs. */
export interface IpSet { cidrs: Cidr[], pos: SourcePos }

/** Policy is a parsed, checked policy file. It holds names as written, not users or nodes. */
export interface Policy {
  groups: Map<string, { members: string[], pos: SourcePos }>
  tagOwners: Map<string, { owners: string[], pos: SourcePos }>
  hosts: Map<string, { cidr: Cidr, pos: SourcePos }>
  ipsets: Map<string, IpSet>
  autoApprovers?: AutoApprovers
  /** postures: named sets of conditions on node attributes (`posture:NAME`) */
  postures: Map<string, PostureDef>
  /** defaultSrcPosture: the postures for rules that name none */
  defaultSrcPosture?: string[]
  acls: PolicyRule[]
  /**
   * grants are the policy's `grants` as rules of the same form as acls, numbered after
   * them: one rule per set of protocols of a grant's `ip`, all with the grant's number
   */
  grants: PolicyRule[]
  tests: PolicyTest[]
  /** ssh and sshTests: Tailscale SSH rules and their tests (ssh-parse.ts); absent when the policy has none */
  ssh?: SshPolicyRule[]
  sshTests?: SshPolicyTest[]
  /** nodeAttrs: the `nodeAttrs` entries, and `randomizeClientPort: true` as one entry for every node */
  nodeAttrs: NodeAttrsEntry[]
  /** text is the source the policy was parsed from */
  text: string
}

/**
 * PolicyUser is what the compiler needs to know about a user; `idpGroups` are the groups
 * the identity provider last said the user is in (what `idp:NAME` group members match).
 */
export interface PolicyUser { name: string, email?: string, idpGroups?: readonly string[], role?: UserRole }

/**
 * PolicyNode is what the compiler needs to know about a node. A node with tags is
 * tagged and has no user identity, as in Tailscale.
 */
export interface PolicyNode {
  id: string
  name: string
  user?: string
  tags: string[]
  ipv4: string
  ipv6: string
  /** subnet routes the node advertises, and those approved (it serves both: servedRoutes) */
  advertisedRoutes?: string[]
  approvedRoutes?: string[]
  /** posture attributes (node:os, custom:...) */
  postureAttrs?: Readonly<Record<string, PostureValue>>
}

/** PolicyIdentity names a source or destination for `check`: a user, tags and/or addresses. */
export interface PolicyIdentity {
  /** user name (as stored) or the user token as written (`alice@`, `alice@example.com`) */
  user?: string
  tags?: string[]
  /** addresses or CIDRs the identity sends from or listens on */
  ips?: string[]
  /** posture attributes of the source's device */
  attrs?: Readonly<Record<string, PostureValue>>
}

/** policyRules lists every rule of a policy: its acls, then its grants. */
export function policyRules (policy: Policy): PolicyRule[] {
  return [...policy.acls, ...policy.grants]
}

/**
 * SshAction is what a Tailscale SSH rule does once it matches: let the session in
 * (`accept`) or hold it until the user re-authenticates (`check`).
 */
export type SshAction = 'accept' | 'check'

/** SshSelector is one entry of an ssh rule's `src` or `dst`, parsed. */
export interface SshSelector { selector: Selector, text: string, pos: SourcePos }

/**
 * SshPolicyRule is one entry of the policy's `ssh` section as written (strings trimmed,
 * as Tailscale reads them). `users` are the login names: `root`, `autogroup:nonroot`,
 * `localpart:*@example.com` or a literal name. Warren has no SSH server yet, so these
 * rules are checked and compiled per node, and grant nothing.
 */
export interface SshPolicyRule {
  index: number
  pos: SourcePos
  /** text is the rule as written, on one line */
  text: string
  action: SshAction
  src: SshSelector[]
  dst: SshSelector[]
  users: string[]
  /** checkPeriodSeconds: how long a check holds (0: every session); only for `check` */
  checkPeriodSeconds?: number
  /** acceptEnv: the environment variable names (globs) the client may send */
  acceptEnv?: string[]
}

/** SshTestUser is one login name of an sshTest's accept, check or deny list. */
export interface SshTestUser { user: string, pos: SourcePos }

/** SshTestTarget is one destination of an sshTest: a user, tag, host alias or address. */
export interface SshTestTarget { target: string, pos: SourcePos }

/** SshPolicyTest is one entry of `sshTests`. */
export interface SshPolicyTest {
  index: number
  pos: SourcePos
  src: string
  srcPos: SourcePos
  dst: SshTestTarget[]
  /** accept: login names the source must get in as, without a check */
  accept: SshTestUser[]
  /** check: login names that must need a check */
  check: SshTestUser[]
  /** deny: login names that must not get in */
  deny: SshTestUser[]
}

/**
 * SshNodeRule is one rule a node would enforce, in the form Tailscale sends a node
 * (tailcfg.SSHRule): who (the source nodes' addresses), as which local users, and
 * what happens. `sshUsers` maps a requested login name to the local user: `*` is any
 * other name, `=` the same name, and an empty value refuses that name.
 */
export interface SshNodeRule {
  /** rule is the index of the `ssh` entry it comes from */
  rule: number
  principals: string[]
  sshUsers: Record<string, string>
  action: SshAction
  checkPeriodSeconds?: number
  acceptEnv?: string[]
}
