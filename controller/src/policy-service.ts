import { WarrenError, createSerialQueue, type Node, type PolicyCheckResponse, type PolicyInfo, type PolicyVersionInfo, type SetPolicyResponse } from '@warren/protocol'
import type { ControllerState } from './state.js'
import { DEFAULT_POLICY_TEXT, autoApprovedRoutes, parsePolicy, tagOwnersAllow, type ExplainResult, type Policy, type PolicyDiff, type PolicyNode, type PolicyUser } from './policy/index.js'
import { rejection } from './policy-jobs.js'
import { createPolicyRunner, type PolicyLimits } from './policy-runner.js'

/** POLICY_PREFIX is where policy versions live in the store: `policy!<version, 12 digits>`. */
export const POLICY_PREFIX = 'policy!'

/** MAX_POLICY_BYTES is the largest policy text the service takes (as the API's PolicyText). */
export const MAX_POLICY_BYTES = 512 * 1024

interface StoredVersion extends PolicyVersionInfo { text: string }

/**
 * PolicyService keeps the access policy document with its version history in the store.
 * A new policy is parsed, resolved against the current users and its tests run, in a
 * worker thread with a memory and time bound; it is then stored and put in force whole,
 * or rejected whole with every problem listed, and the policy in force is untouched.
 * It does not compile the policy for nodes: whoever owns the PolicyEngine follows
 * onPolicyChange.
 */
export interface PolicyService {
  /** current is the policy in force */
  current: () => Policy
  /** info is the version in force, with its text */
  info: () => PolicyInfo
  history: () => PolicyVersionInfo[]
  /** check parses `text` (or the policy in force) and runs its tests; nothing changes */
  check: (text?: string) => Promise<PolicyCheckResponse>
  set: (text: string, actor: string, message?: string) => Promise<SetPolicyResponse>
  /** rollback makes an earlier version's text the newest version (checked again) */
  rollback: (version: number, actor: string, message?: string) => Promise<SetPolicyResponse>
  diff: (text: string) => Promise<PolicyDiff>
  explain: (src: string, dst: string, port: number, proto?: string) => Promise<ExplainResult>
  /** onPolicyChange hears each new policy once it is stored (set and rollback) */
  onPolicyChange: (listener: (policy: Policy) => void) => () => void
  /** tagOwnersAllow says whether the policy in force lets `user` put `tag` on its nodes */
  tagOwnersAllow: (user: string | undefined, tag: string) => boolean
  /** autoApprovedRoutes lists the routes a node advertises that the policy in force's autoApprovers approve */
  autoApprovedRoutes: (node: Node) => string[]
  close: () => Promise<void>
}

/** PolicyServiceOptions bound the work one policy request may cost. */
export interface PolicyServiceOptions extends PolicyLimits {
  /** maxPolicyBytes: longer texts are refused with 413 (default MAX_POLICY_BYTES) */
  maxPolicyBytes?: number
}

/**
 * createPolicyService loads the newest stored policy that parses (the built-in allow-all
 * when there is none).
 */
export async function createPolicyService (state: ControllerState, opts: PolicyServiceOptions = {}): Promise<PolicyService> {
  const versions: StoredVersion[] = []
  for (const [, value] of await state.store.readPrefix(POLICY_PREFIX)) versions.push(value as StoredVersion)
  versions.sort((a, b) => a.version - b.version)

  const users = (): PolicyUser[] => policyUsers(state)
  const nodes = (): PolicyNode[] => state.listNodes().filter((n: Node) => n.status === 'active').map(policyNode)

  let active: StoredVersion = { version: 0, actor: 'warren', time: new Date(0).toISOString(), message: 'built-in default: allow all', text: DEFAULT_POLICY_TEXT }
  let policy = parsePolicy(DEFAULT_POLICY_TEXT).policy!
  // The newest stored version that still parses is in force.
  for (let i = versions.length - 1; i >= 0; i--) {
    const parsed = parsePolicy(versions[i]!.text)
    if (parsed.policy !== undefined) { active = versions[i]!; policy = parsed.policy; break }
  }
  const listeners = new Set<(policy: Policy) => void>()
  const runner = createPolicyRunner(opts)
  const maxBytes = opts.maxPolicyBytes ?? MAX_POLICY_BYTES

  const sized = (text: string): string => {
    if (Buffer.byteLength(text) > maxBytes) {
      throw new WarrenError('policy_too_large', `the policy is ${Buffer.byteLength(text)} bytes; the limit is ${maxBytes} bytes. Make it smaller: groups in place of long user lists, fewer rules`, { status: 413, field: 'text' })
    }
    return text
  }

  /** validate returns the parsed policy or throws one error that lists every problem. */
  const validate = async (text: string): Promise<{ policy: Policy, warnings: string[] }> => {
    const v = await runner.run({ kind: 'validate', text: sized(text), users: users(), nodes: nodes() })
    if (v.policy === undefined) {
      throw v.testsFailed
        ? rejection('policy_tests_failed', 'the policy was not applied: its tests fail', v.errors)
        : rejection('policy_invalid', 'the policy was not applied', v.errors)
    }
    return { policy: v.policy, warnings: v.warnings }
  }

  const changes = createSerialQueue()
  const apply = async (text: string, actor: string, message: string): Promise<SetPolicyResponse> => await changes.run(async () => {
    const checked = await validate(text)
    const version = Math.max(active.version, versions[versions.length - 1]?.version ?? 0) + 1
    const record: StoredVersion = { version, actor, time: new Date().toISOString(), message, text }
    await state.commit([{ type: 'raw-put', key: `${POLICY_PREFIX}${String(version).padStart(12, '0')}`, value: record }],
      actor, 'policy.set', `policy v${version}`, { message })
    versions.push(record)
    active = record
    policy = checked.policy
    for (const l of listeners) l(policy)
    return { version, warnings: checked.warnings }
  })

  const info = (v: StoredVersion): PolicyVersionInfo => ({ version: v.version, actor: v.actor, time: v.time, message: v.message })

  return {
    current: () => policy,
    info: () => ({ ...info(active), text: active.text }),
    history: () => [...versions].reverse().map(info),
    async check (text) {
      const v = await runner.run({ kind: 'validate', text: sized(text ?? active.text), users: users(), nodes: nodes() })
      return { ok: v.errors.length === 0, errors: v.errors, warnings: v.warnings }
    },
    set: async (text, actor, message) => await apply(text, actor, message ?? ''),
    async rollback (version, actor, message) {
      const target = version === 0 ? { text: DEFAULT_POLICY_TEXT } : versions.find(v => v.version === version)
      if (target === undefined) {
        throw new WarrenError('policy_version_not_found', `no policy version ${version}; 'warren admin policy history' lists them`, { status: 404, field: 'version' })
      }
      return await apply(target.text, actor, message ?? `rollback to v${version}`)
    },
    async diff (text) {
      return await runner.run({ kind: 'diff', oldText: active.text, text: sized(text), nodes: nodes(), users: users() })
    },
    explain: async (src, dst, port, proto) =>
      await runner.run({ kind: 'explain', text: active.text, src, dst, port, ...(proto !== undefined ? { proto } : {}), users: users(), nodes: nodes() }),
    onPolicyChange (listener) {
      listeners.add(listener)
      return () => { listeners.delete(listener) }
    },
    autoApprovedRoutes: node => autoApprovedRoutes(policy, node, policyUsers(state)),
    tagOwnersAllow (userName, tag) {
      if (userName === undefined) return false
      return tagOwnersAllow(policy, policyUsers(state).find(u => u.name === userName) ?? userName, tag)
    },
    async close () {
      listeners.clear()
      await runner.close()
    }
  }
}

/** policyUsers is what the policy needs of the state's users: names, emails, roles, and the groups the identity provider last gave. */
export function policyUsers (state: ControllerState): PolicyUser[] {
  return [...state.store.users.values()].map(u => ({
    name: u.name,
    ...(u.email !== undefined ? { email: u.email } : {}),
    ...(u.idp !== undefined && u.idp.groups.length > 0 ? { idpGroups: u.idp.groups } : {}),
    ...(u.role !== undefined ? { role: u.role } : {})
  }))
}

/** policyNode is what the policy needs of a node, so a snapshot sent to the worker stays small. */
function policyNode (n: Node): PolicyNode {
  const out: PolicyNode = { id: n.id, name: n.name, tags: n.tags, ipv4: n.ipv4, ipv6: n.ipv6 }
  if (n.user !== undefined) out.user = n.user
  if (n.postureAttrs !== undefined) out.postureAttrs = n.postureAttrs
  return out
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
