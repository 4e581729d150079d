import { parsePolicy, type ParseResult } from './parse.js'
import { runTests } from './policy-tests.js'
import type { PolicyUser } from './types.js'

/**
 * validatePolicy is what `set` and `check` run: parse, then the policy's tests. A
 * failing test is an error, so a policy whose tests fail is never applied.
 */
export function validatePolicy (text: string, users: readonly PolicyUser[] = []): ParseResult {
  const parsed = parsePolicy(text, { users })
  if (parsed.policy === undefined) return parsed
  const failures = runTests(parsed.policy, users)
  return failures.length === 0 ? parsed : { errors: failures, warnings: parsed.warnings }
}
