import { WarrenError } from '@warren/protocol'
import { diff, explain, parsePolicy, testFailures, type ExplainResult, type Policy, type PolicyDiff, type PolicyNode, type PolicyUser } from './policy/index.js'

/**
 * PolicyJob is one piece of policy work that a request asks for: whatever its text, it
 * runs in the policy worker thread under a memory and time bound, never on the thread
 * that serves requests. Users and nodes are snapshots taken when the request came in.
 */
export type PolicyJob =
  | { kind: 'validate', text: string, users: PolicyUser[], nodes?: PolicyNode[] }
  | { kind: 'diff', oldText: string, text: string, nodes: PolicyNode[], users: PolicyUser[] }
  | { kind: 'explain', text: string, src: string, dst: string, port: number, proto?: string, nodes: PolicyNode[], users: PolicyUser[] }

/**
 * Validation is what `check`, `set` and `rollback` need to know about a text: the parsed
 * policy when it parses and its tests pass, or every problem (as `line:column: ...`).
 * `testsFailed` tells a policy that parses but fails its own tests.
 */
export interface Validation {
  policy?: Policy
  errors: string[]
  warnings: string[]
  testsFailed: boolean
}

export type PolicyJobResult<J extends PolicyJob> =
  J extends { kind: 'validate' } ? Validation : J extends { kind: 'diff' } ? PolicyDiff : ExplainResult

/** runPolicyJob does one job; bad input gives its result or a WarrenError, like the functions it calls. */
export function runPolicyJob (job: PolicyJob): Validation | PolicyDiff | ExplainResult {
  switch (job.kind) {
    case 'validate': {
      const parsed = parsePolicy(job.text, { users: job.users })
      const warnings = parsed.warnings.map(w => w.message)
      if (parsed.policy === undefined) return { errors: parsed.errors.map(e => e.message), warnings, testsFailed: false }
      const failures = testFailures(parsed.policy, job.users, job.nodes)
      if (failures.length > 0) return { errors: failures.map(e => e.message), warnings, testsFailed: true }
      return { policy: parsed.policy, errors: [], warnings, testsFailed: false }
    }
    case 'diff': {
      const parsed = parsePolicy(job.text, { users: job.users })
      if (parsed.policy === undefined) throw rejection('policy_invalid', 'cannot diff an invalid policy', parsed.errors.map(e => e.message))
      return diff(parseValid(job.oldText), parsed.policy, job.nodes, job.users)
    }
    case 'explain':
      return explain(parseValid(job.text), job.src, job.dst, job.port, job.proto, { users: job.users, nodes: job.nodes })
  }
}

/** parseValid parses a text the caller has already validated. */
function parseValid (text: string): Policy {
  const parsed = parsePolicy(text)
  if (parsed.policy === undefined) throw parsed.errors[0]!
  return parsed.policy
}

/** rejection is one WarrenError listing every problem, within the API's message limit. */
export function rejection (code: string, what: string, errors: readonly string[]): WarrenError {
  const lines: string[] = []
  let length = what.length
  for (const e of errors) {
    if (length + e.length > 3500) { lines.push(`... and ${errors.length - lines.length} more`); break }
    lines.push(e)
    length += e.length + 1
  }
  return new WarrenError(code, `${what}:\n${lines.join('\n')}`, { status: 400 })
}
