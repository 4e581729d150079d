import { WarrenError, type Node, type PolicyCheckResponse, type PolicyInfo, type PolicyVersionInfo, type SetPolicyResponse } from '@warren/protocol'
import type { ControllerState } from '../state.js'
import { createPolicyEngine, type PolicyEngine } from './compile.js'
import { PolicyError } from './errors.js'
import { diff, explain, runTests, tagOwnersAllow, type ExplainResult, type PolicyDiff } from './explain.js'
import { DEFAULT_POLICY_TEXT, parsePolicy } from './parse.js'
import type { Policy, PolicyNode, PolicyUser } from './types.js'
import { createUserDirectory } from './users.js'

/** POLICY_PREFIX is where policy versions live in the store: `policy!<version, 12 digits>`. */
export const POLICY_PREFIX = 'policy!'

interface StoredVersion extends PolicyVersionInfo { text: string }

/**
 * PolicyService keeps the access policy with its version history in the store and one
 * PolicyEngine in step with it. A new policy is parsed, resolved against the current
 * users and its tests run; it is then stored and applied whole, or rejected whole with
 * every problem listed, and the running policy is untouched.
 */
export interface PolicyService {
  /** engine is what the map server uses; the service swaps its policy and users in place */
  readonly engine: PolicyEngine
  current: () => PolicyInfo & { policy: Policy }
  history: () => PolicyVersionInfo[]
  /** check parses `text` (or the policy in force) and runs its tests; nothing changes */
  check: (text?: string) => PolicyCheckResponse
  set: (text: string, actor: string, message?: string) => Promise<SetPolicyResponse>
  /** rollback makes an earlier version's text the newest version (checked again) */
  rollback: (version: number, actor: string, message?: string) => Promise<SetPolicyResponse>
  diff: (text: string) => PolicyDiff
  explain: (src: string, dst: string, port: number, proto?: string) => ExplainResult
  /** tagOwnersAllow says whether the policy in force lets `user` put `tag` on its nodes */
  tagOwnersAllow: (user: string | undefined, tag: string) => boolean
  /** onChange tells the map server which nodes' peers or filters a policy or user change touched */
  onChange: (listener: (changed: Set<string>) => void) => () => void
  close: () => void
}

/**
 * createPolicyService loads the newest stored policy (the built-in allow-all when there
 * is none) and follows user changes.
 */
export async function createPolicyService (state: ControllerState): Promise<PolicyService> {
  const versions: StoredVersion[] = []
  for (const [, value] of await state.store.readPrefix(POLICY_PREFIX)) versions.push(value as StoredVersion)
  versions.sort((a, b) => a.version - b.version)

  const users = (): PolicyUser[] => state.listUsers().map(u => (u.email === undefined ? { name: u.name } : { name: u.name, email: u.email }))
  const nodes = (): PolicyNode[] => state.listNodes().filter((n: Node) => n.status === 'active')

  let active: StoredVersion = { version: 0, actor: 'warren', time: new Date(0).toISOString(), message: 'built-in default: allow all', text: DEFAULT_POLICY_TEXT }
  let policy = parsePolicy(DEFAULT_POLICY_TEXT).policy!
  // The newest stored version that still parses is in force.
  for (let i = versions.length - 1; i >= 0; i--) {
    const parsed = parsePolicy(versions[i]!.text)
    if (parsed.policy !== undefined) { active = versions[i]!; policy = parsed.policy; break }
  }
  const engine = createPolicyEngine(policy, users())
  const listeners = new Set<(changed: Set<string>) => void>()
  const notify = (changed: Set<string>): void => { for (const l of listeners) l(changed) }


  // A user change matters only when it changes whom an email in the policy names
  // (`name@` never depends on which users exist), so most user changes cost nothing.
  let resolved = emailResolution(policy, users())
  const onUsers = (): void => {
    const now = emailResolution(policy, users())
    if (now === resolved) return
    resolved = now
    notify(engine.setPolicy(policy, users()))
  }
  state.events.on('user-upserted', onUsers)
  state.events.on('user-removed', onUsers)

  /** validate returns the parsed policy or throws one error that lists every problem. */
  const validate = (text: string): { policy: Policy, warnings: string[] } => {
    const parsed = parsePolicy(text, { users: users() })
    if (parsed.policy === undefined) throw rejection('policy_invalid', 'the policy was not applied', parsed.errors)
    const failures = runTests(parsed.policy, users())
    if (failures.length > 0) throw rejection('policy_tests_failed', 'the policy was not applied: its tests fail', failures)
    return { policy: parsed.policy, warnings: parsed.warnings.map(w => w.message) }
  }

  let queue: Promise<unknown> = Promise.resolve()
  const serial = async <T>(f: () => Promise<T>): Promise<T> => {
    const run = queue.then(f, f)
    queue = run.catch(() => {})
    return await run
  }

  const apply = async (text: string, actor: string, message: string): Promise<SetPolicyResponse> => await serial(async () => {
    const checked = validate(text)
    const version = Math.max(active.version, versions[versions.length - 1]?.version ?? 0) + 1
    const record: StoredVersion = { version, actor, time: new Date().toISOString(), message, text }
    await state.commit([{ type: 'raw-put', key: `${POLICY_PREFIX}${String(version).padStart(12, '0')}`, value: record }],
      actor, 'policy.set', `policy v${version}`, { message })
    versions.push(record)
    active = record
    policy = checked.policy
    resolved = emailResolution(policy, users())
    notify(engine.setPolicy(policy, users()))
    return { version, warnings: checked.warnings }
  })

  const info = (v: StoredVersion): PolicyVersionInfo => ({ version: v.version, actor: v.actor, time: v.time, message: v.message })

  return {
    engine,
    current: () => ({ ...info(active), text: active.text, policy }),
    history: () => [...versions].reverse().map(info),
    check (text) {
      const parsed = parsePolicy(text ?? active.text, { users: users() })
      const errors = parsed.policy === undefined ? parsed.errors : runTests(parsed.policy, users())
      return { ok: errors.length === 0, errors: errors.map(e => e.message), warnings: parsed.warnings.map(w => w.message) }
    },
    set: async (text, actor, message) => await apply(text, actor, message ?? ''),
    async rollback (version, actor, message) {
      const target = version === 0 ? { text: DEFAULT_POLICY_TEXT } : versions.find(v => v.version === version)
      if (target === undefined) {
        throw new WarrenError('policy_version_not_found', `no policy version ${version}; 'warren admin policy history' lists them`, { status: 404, field: 'version' })
      }
      return await apply(target.text, actor, message ?? `rollback to v${version}`)
    },
    diff (text) {
      const parsed = parsePolicy(text, { users: users() })
      if (parsed.policy === undefined) throw rejection('policy_invalid', 'cannot diff an invalid policy', parsed.errors)
      return diff(policy, parsed.policy, nodes(), users())
    },
    tagOwnersAllow (userName, tag) {
      if (userName === undefined) return false
      const user = state.getUser(userName)
      return tagOwnersAllow(policy, user === undefined ? userName : (user.email === undefined ? { name: user.name } : { name: user.name, email: user.email }), tag)
    },
    explain: (src, dst, port, proto) => explain(policy, src, dst, port, proto, { users: users(), nodes: nodes() }),
    onChange (listener) {
      listeners.add(listener)
      return () => { listeners.delete(listener) }
    },
    close () {
      state.events.off('user-upserted', onUsers)
      state.events.off('user-removed', onUsers)
      listeners.clear()
    }
  }
}

/** emailResolution lists which user each email in the policy's groups and rules names. */
function emailResolution (policy: Policy, users: readonly PolicyUser[]): string {
  const dir = createUserDirectory(users)
  const emails = new Set<string>()
  for (const g of policy.groups.values()) for (const m of g.members) if (!m.endsWith('@')) emails.add(m)
  for (const r of policy.acls) {
    for (const s of [...r.src, ...r.dst]) if (s.selector.kind === 'user' && !s.selector.token.endsWith('@')) emails.add(s.selector.token)
  }
  return [...emails].sort().map(e => `${e}=${dir.resolve(e).name}`).join(' ')
}

const services = new WeakMap<ControllerState, Promise<PolicyService>>()

/** policyServiceFor gives the one PolicyService of a controller state, created on first use. */
export async function policyServiceFor (state: ControllerState): Promise<PolicyService> {
  let service = services.get(state)
  if (service === undefined) {
    service = createPolicyService(state)
    services.set(state, service)
  }
  return await service
}

/** rejection is one WarrenError listing every problem, within the API's message limit. */
function rejection (code: string, what: string, errors: PolicyError[]): WarrenError {
  const lines: string[] = []
  let length = what.length
  for (const e of errors) {
    if (length + e.message.length > 3500) { lines.push(`... and ${errors.length - lines.length} more`); break }
    lines.push(e.message)
    length += e.message.length + 1
  }
  return new WarrenError(code, `${what}:\n${lines.join('\n')}`, { status: 400 })
}
