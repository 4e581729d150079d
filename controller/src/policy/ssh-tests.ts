import { destinationMatches, resolveSubject, type CompiledPolicy, type Subject } from './compile-policy.js'
import { PolicyError } from './errors.js'
import { testSources } from './policy-tests.js'
import { actionFirst, compileSsh, localpartsOf, loginAllowed, sourceMatches, sshUsersMap, type CompiledSsh } from './ssh-compile.js'
import type { Policy, PolicyNode, PolicyUser, SshAction, SshPolicyRule } from './types.js'

/** SshDecision: what a session from `src` to `dst` as a login name gets, and from which rule. */
interface SshDecision { action: SshAction, rule: SshPolicyRule }

/**
 * sshDecision finds the rule a node would apply to a session, as Tailscale's nodes do:
 * the first rule (`check` rules first) whose sources hold `src`, whose destinations
 * hold `dst`, and whose login names let `login` in. Undefined means denied.
 */
function sshDecision (ssh: CompiledSsh, users: readonly PolicyUser[], src: Subject, dst: Subject, login: string): SshDecision | undefined {
  for (const { rule, compiled } of actionFirst(ssh.rules.map(r => ({ ...r, action: r.rule.action })))) {
    if (!sourceMatches(compiled, src) || !compiled.dsts.some(d => destinationMatches(d.key, src, dst))) continue
    const local = src.user === undefined ? undefined : localpartsOf(rule.users, users).get(src.user)
    if (loginAllowed(sshUsersMap(rule.users), login) || local === login) return { action: rule.action, rule }
  }
  return undefined
}

/**
 * targetSubject resolves an sshTest destination; a host alias of one address that a
 * device has stands for that device, as an address does (Tailscale reads it so).
 */
function targetSubject (cp: CompiledPolicy, target: string, nodes: readonly PolicyNode[]): Subject {
  const host = cp.policy.hosts.get(target)
  const address = host === undefined || host.cidr.length < (host.cidr.family === 4 ? 32 : 128) ? undefined : host.cidr.text.replace(/\/\d+$/, '')
  return resolveSubject(cp, address ?? target, nodes)
}

/**
 * runSshTests evaluates `sshTests` like `tests`: one PolicyError per failed expectation,
 * placed at the login name, saying what was expected and which rule decides instead. A
 * group as the source must hold for each member; `nodes` let an address stand for the
 * device that has it.
 */
export function runSshTests (policy: Policy, users: readonly PolicyUser[] = [], nodes: readonly PolicyNode[] = []): PolicyError[] {
  const tests = policy.sshTests ?? []
  if (tests.length === 0) return []
  const ssh = compileSsh(policy, users)
  const failures: PolicyError[] = []
  for (const test of tests) {
    const name = `ssh test ${test.index + 1}`
    const sources = testSources(ssh.cp, test, users, nodes)
    if (sources.length === 0) failures.push(new PolicyError(test.srcPos.line, test.srcPos.column, `${name}: ${test.src} has no members, so the test checks nothing`))
    for (const { target } of test.dst) {
      const dst = targetSubject(ssh.cp, target, nodes)
      for (const [expect, names] of [['accept', test.accept], ['check', test.check], ['deny', test.deny]] as const) {
        for (const { user, pos } of names) {
          for (const { label, subject } of sources) {
            const got = sshDecision(ssh, users, subject, dst, user)
            const outcome = got?.action ?? 'deny'
            if (outcome === expect) continue
            const flow = `${label} -> ${target} as ${user}`
            const why = got === undefined
              ? 'no ssh rule lets it in'
              : `ssh rule ${got.rule.index + 1} (line ${got.rule.pos.line}) ${got.action === 'check' ? 'lets it in after a check' : 'lets it in without a check'}`
            failures.push(new PolicyError(pos.line, pos.column, `${name}: ${flow} expected ${expect} but ${why}`))
          }
        }
      }
    }
  }
  return failures
}
