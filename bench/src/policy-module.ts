/**
 * policy-module loads the controller's policy engine for the policy benchmarks (the
 * package index does not export it) and types the part of it they drive.
 */

export interface FilterRuleLike { srcs: string[] }
export interface PolicyNode { id: string, name: string, user?: string, tags: string[], ipv4: string, ipv6: string, postureAttrs?: Record<string, string> }
export interface PolicyEngine {
  setNodes: (nodes: readonly PolicyNode[]) => void
  upsertNode: (node: PolicyNode) => Set<string>
  removeNode: (id: string) => Set<string>
  peersOf: (id: string) => ReadonlySet<string>
  filterFor: (id: string) => FilterRuleLike[]
}
interface ParseResult { policy?: unknown, errors: Array<{ message: string }> }
export interface PolicyModule {
  parsePolicy: (text: string, opts: { users: Array<{ name: string }> }) => ParseResult
  validatePolicy: (text: string, users: Array<{ name: string }>) => ParseResult
  createPolicyEngine: (policy: unknown, users: Array<{ name: string }>) => PolicyEngine
  DEFAULT_POLICY_TEXT: string
}

export async function loadPolicyModule (): Promise<PolicyModule> {
  return await import(new URL('./policy/index.js', import.meta.resolve('@warren/controller')).href) as PolicyModule
}
