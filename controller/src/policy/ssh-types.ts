import type { Selector, SourcePos } from './types.js'

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
