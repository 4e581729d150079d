import { createCheckMemo } from './check-memo.js'
import { compilePolicy, resolveSubject, type CompiledPolicy, type Subject } from './compile-policy.js'
import { PolicyError } from './errors.js'
import { flowText } from './explain.js'
import type { Policy, PolicyNode, PolicyTest, PolicyUser } from './types.js'
import { expandIdpGroups } from './users.js'
import { baseKey, postureKeys } from './posture-keys.js'

/**
 * runTests evaluates the policy's `tests` on identities and returns one PolicyError per
 * failed expectation, placed at the `accept`/`deny` entry, saying what was expected and why
 * it does not hold. A group as the source must hold for each of its members. An empty
 * list means every test passes.
 */
export function runTests (policy: Policy, users: readonly PolicyUser[] = []): PolicyError[] {
  const cp = compilePolicy(policy, users)
  // a group source is checked for each member; members alike in what the rules name share one answer
  const check = createCheckMemo(cp)
  const failures: PolicyError[] = []
  for (const test of policy.tests) {
    const sources = testSources(cp, test, users)
    if (sources.length === 0) {
      failures.push(new PolicyError(test.srcPos.line, test.srcPos.column, `test ${test.index + 1}: ${test.src} has no members, so the test checks nothing`))
      continue
    }
    for (const [expect, cases] of [['accept', test.accept], ['deny', test.deny]] as const) {
      for (const c of cases) {
        const dst = resolveSubject(cp, c.target)
        for (const { label, subject } of sources) {
          for (const proto of test.protos) {
            const r = check(subject, dst, proto, c.port)
            const flow = (): string => flowText(label, c.target, proto, c.port)
            if (expect === 'accept' && !r.allowed) {
              failures.push(new PolicyError(c.pos.line, c.pos.column, `test ${test.index + 1}: ${flow()} expected accept but is denied: no rule matches`))
            } else if (expect === 'deny' && r.allowed) {
              const by = r.rules.map(x => `rule ${x.index + 1} (line ${x.line})`).join(', ')
              failures.push(new PolicyError(c.pos.line, c.pos.column, `test ${test.index + 1}: ${flow()} expected deny but is allowed by ${by}`))
            }
          }
        }
      }
    }
  }
  return failures
}

/**
 * testSources: the test's source, or each member of a group source (labelled `group:x (alice@)`);
 * an `idp:` member stands for the users the identity provider has put in that group now.
 */
export function testSources (cp: CompiledPolicy, test: Pick<PolicyTest, 'src' | 'srcAttrs'>, users: readonly PolicyUser[], nodes: readonly PolicyNode[] = []): Array<{ label: string, subject: Subject }> {
  const group = cp.policy.groups.get(test.src)
  const source = (who: string, nodes?: readonly PolicyNode[]): Subject => withAttrs(cp, resolveSubject(cp, who, nodes), test)
  if (group === undefined) return [{ label: test.src, subject: source(test.src, nodes) }]
  return expandIdpGroups(group.members, users).map(m => ({ label: `${test.src} (${m})`, subject: source(m) }))
}

/** withAttrs gives a test's source the device attributes of its `srcPostureAttrs` (without them it meets only postures that ask for nothing set). */
function withAttrs (cp: CompiledPolicy, s: Subject, test: Pick<PolicyTest, 'srcAttrs'>): Subject {
  if (test.srcAttrs === undefined || cp.postures.size === 0) return s
  return { ...s, keys: postureKeys(cp.postures, new Set([...s.keys].filter(k => baseKey(k) === k)), test.srcAttrs) }
}
