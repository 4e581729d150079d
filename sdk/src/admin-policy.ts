import type {
  PolicyInfo, PolicyVersionInfo, PolicyHistory, SetPolicyResponse, PolicyCheckResponse,
  PolicyDiffResponse, PolicyExplainRequest, PolicyExplainResponse
} from '@warren/protocol'
import type { AdminClient } from './admin-client.js'

/**
 * PolicyAdmin is the access policy part of the admin API (/v1/policy). A policy that
 * does not parse, names unknown groups or tags, or fails its own `tests` is rejected
 * whole: `set` and `rollback` then throw a WarrenError (`policy_invalid` or
 * `policy_tests_failed`) whose message lists every problem as `line:column: what`, and
 * the policy in force does not change.
 */
export interface PolicyAdmin {
  /** get returns the policy in force: its text and version (0 is the built-in allow-all) */
  get(): Promise<PolicyInfo>
  /** set checks `text` and makes it the new version, or changes nothing */
  set(text: string, message?: string): Promise<SetPolicyResponse>
  /** check parses `text` (the policy in force when omitted) and runs its tests; nothing changes */
  check(text?: string): Promise<PolicyCheckResponse>
  /** history lists the stored versions, newest first */
  history(): Promise<PolicyVersionInfo[]>
  /** rollback makes an earlier version's text the newest version (checked again) */
  rollback(version: number, message?: string): Promise<SetPolicyResponse>
  /** diff lists the access `text` would gain and lose against the policy in force, by name, and the capabilities it would give, take or change (`caps`) */
  diff(text: string): Promise<PolicyDiffResponse>
  /** explain names the rules of the policy in force that allow a flow, or says none does, and the capabilities (with their grants) the source gets at the destination */
  explain(req: PolicyExplainRequest): Promise<PolicyExplainResponse>
}

/**
 * createPolicyAdmin builds the policy methods on an admin client's `request`, so they
 * share its transport, credentials and error handling.
 *
 * @example
 * const policy = createPolicyAdmin(createAdminClient({ stateDir: '/var/lib/warren' }))
 * await policy.set(await readFile('policy.hujson', 'utf8'), 'open the db to eng')
 */
export function createPolicyAdmin (admin: Pick<AdminClient, 'request'>): PolicyAdmin {
  const withMessage = (message: string | undefined): { message?: string } => message === undefined ? {} : { message }
  return {
    get: async () => await admin.request<PolicyInfo>('GET', '/policy'),
    set: async (text, message) => await admin.request<SetPolicyResponse>('PUT', '/policy', { text, ...withMessage(message) }),
    check: async text => await admin.request<PolicyCheckResponse>('POST', '/policy/check', text === undefined ? {} : { text }),
    history: async () => (await admin.request<PolicyHistory>('GET', '/policy/history')).versions,
    rollback: async (version, message) => await admin.request<SetPolicyResponse>('POST', '/policy/rollback', { version, ...withMessage(message) }),
    diff: async text => await admin.request<PolicyDiffResponse>('POST', '/policy/diff', { text }),
    explain: async req => await admin.request<PolicyExplainResponse>('POST', '/policy/explain', req)
  }
}
