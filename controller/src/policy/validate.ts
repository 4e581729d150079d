import { parsePolicy, type ParseResult } from './parse.js'
import type { PolicyError } from './errors.js'
import { runTests } from './policy-tests.js'
import { runSshTests } from './ssh-tests.js'
import type { Policy, PolicyNode, PolicyUser } from './types.js'

/**
 * testFailures runs a parsed policy's `tests` and `sshTests`; `nodes` let an address in
 * an sshTest stand for the device that has it.
 */
export function testFailures (policy: Policy, users: readonly PolicyUser[] = [], nodes: readonly PolicyNode[] = []): PolicyError[] {
  return [...runTests(policy, users), ...runSshTests(policy, users, nodes)]
}

/**
 * validatePolicy is what `set` and `check` run: parse, then the policy's tests. A
 * failing test is an error, so a policy whose tests fail is never applied.
 */
export function validatePolicy (text: string, users: readonly PolicyUser[] = [], nodes: readonly PolicyNode[] = []): ParseResult {
  const parsed = parsePolicy(text, { users })
  if (parsed.policy === undefined) return parsed
  const failures = testFailures(parsed.policy, users, nodes)
  return failures.length === 0 ? parsed : { errors: failures, warnings: parsed.warnings }
}
