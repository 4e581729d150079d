import { checkCompiled, compilePolicy, resolveSubject } from './compile-policy.js'
import { PolicyError } from './errors.js'
import { flowText } from './explain.js'
import type { Policy, PolicyUser } from './types.js'

/**
 * runTests evaluates the policy's `tests` on identities and returns one PolicyError per
 * failed expectation, placed at the `accept`/`deny` entry, saying what was expected and why
 * it does not hold. An empty list means every test passes.
 */
export function runTests (policy: Policy, users: readonly PolicyUser[] = []): PolicyError[] {
  const cp = compilePolicy(policy, users)
  const failures: PolicyError[] = []
  for (const test of policy.tests) {
    const src = resolveSubject(cp, test.src)
    for (const [expect, cases] of [['accept', test.accept], ['deny', test.deny]] as const) {
      for (const c of cases) {
        const dst = resolveSubject(cp, c.target)
        for (const proto of test.protos) {
          const r = checkCompiled(cp, src, dst, proto, c.port)
          const flow = flowText(test.src, c.target, proto, c.port)
          if (expect === 'accept' && !r.allowed) {
            failures.push(new PolicyError(c.pos.line, c.pos.column, `test ${test.index + 1}: ${flow} expected accept but is denied: no rule matches`))
          } else if (expect === 'deny' && r.allowed) {
            const by = r.rules.map(x => `rule ${x.index + 1} (line ${x.line})`).join(', ')
            failures.push(new PolicyError(c.pos.line, c.pos.column, `test ${test.index + 1}: ${flow} expected deny but is allowed by ${by}`))
          }
        }
      }
    }
  }
  return failures
}
