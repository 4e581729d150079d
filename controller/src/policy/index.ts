/**
 * The access policy engine: Tailscale-style HuJSON policies, parsed with exact
 * line:column errors, checked on identities, and compiled per node into peers and an
 * inbound packet filter. It is pure (no I/O, no state, no server; a test bans such
 * imports), so the controller's policy service, the map service, a worker thread and
 * the CLI share it. Versions in the store and the admin routes live outside it
 * (controller/src/policy-service.ts, controller/src/routes/policy.ts).
 *
 * API
 * - parsePolicy(text, {users?}) -> {policy?, errors: PolicyError[], warnings: PolicyError[]}
 *   Every problem is collected; `policy` is set only when there are no errors. Users
 *   that do not exist yet are warnings (when `users` is given).
 * - validatePolicy(text, users, nodes?) -> the same, with failing `tests` and `sshTests` as errors (for `set`/`check`).
 * - compileSshPolicy(policy, users, nodes) -> node id -> the SSH rules it would enforce (Tailscale's form;
 *   Warren has no SSH server yet, so nothing enforces them). runSshTests(policy, users, nodes?) -> PolicyError[].
 * - DEFAULT_POLICY_TEXT: allow all, the policy in force when none is set.
 * - createPolicyEngine(policy, users, {meshIpv6?}) -> PolicyEngine: setNodes, upsertNode/removeNode
 *   (-> NodeChange: ids whose peers or filter changed, with peersGained/peersLost/
 *   filterChanged), peersOf(id), filterFor(id), attrsFor(id) (its nodeAttrs), setPolicy(policy, users) -> changed ids.
 *   filterFor holds, after the traffic rules, the capability rules of grants with `app`
 *   that reach the node (FilterRule.caps; capabilitiesOf in protocol reads them).
 * - check(policy, src, dst, proto, port, {users?, nodes?}) -> {allowed, rules: [{index, line}]}
 *   on identities: `alice@`, `alice@example.com`, `tag:web`, a host alias, an IP.
 * - explain(policy, src, dst, port, proto?, {users?, nodes?}) -> {allowed, rules, caps, message}; with
 *   nodes, the message names the subnet routers that forward a flow to an address behind them
 * - runTests(policy, users) -> PolicyError[] (one per failed expectation)
 * - diff(oldPolicy, newPolicy, nodes, users) -> {gained, lost, caps}: Access {kind, src, dst, proto, ports}, CapChange
 * - tagOwnersAllow(policy, user, tag) -> boolean, for node registration.
 * - autoApprovedRoutes(policy, node, users) -> the advertised routes autoApprovers approve.
 * - emailResolution(policy, users) -> text that changes when a user change changes whom the policy names.
 *
 * @example
 * const { policy, errors } = parsePolicy(text, { users })
 * if (policy === undefined) throw errors[0]
 * const engine = createPolicyEngine(policy, users)
 * engine.setNodes(nodes)
 * const change = engine.upsertNode(node) // send deltas to the ids in `change`
 * const netmapFilter = engine.filterFor(node.id)
 */
export { parsePolicy, DEFAULT_POLICY_TEXT, DEFAULT_PROTOS, PROTO_NAMES, parseGrantIp, parsePorts, parseProto, splitHostPort, type GrantIp, type ParseResult } from './parse.js'
export { PolicyError, didYouMean } from './errors.js'
export { createPolicyEngine, type PolicyEngine, type NodeChange, type EngineOptions } from './engine.js'
export { check, type CheckResult, type CheckOptions } from './compile-policy.js'
export { explain, protoName, portsText, type ExplainResult, type ExplainCap } from './explain.js'
export { runTests } from './policy-tests.js'
export { validatePolicy, testFailures } from './validate.js'
export { runSshTests } from './ssh-tests.js'
export { compileSshPolicy } from './ssh-compile.js'
export type { SshNodeRule, SshPolicyRule, SshPolicyTest, SshAction } from './types.js'
export { diff, type Access, type PolicyDiff } from './diff.js'
export type { CapChange } from './cap-diff.js'
export { tagOwnersAllow } from './tag-owners.js'
export { autoApprovedRoutes } from './auto-approvers.js'
export { buildFilter, mergeRanges } from './build-filter.js'
export { emailResolution } from './users.js'
export { WARREN_ATTRS, isTailscaleOnlyAttr } from './node-attrs.js'
export type { Policy, PolicyNode, PolicyUser, PolicyIdentity, PolicyRule, PolicyTest, PortRange, Selector, SourcePos } from './types.js'

import { parsePolicy, DEFAULT_POLICY_TEXT } from './parse.js'
import type { Policy } from './types.js'

/** defaultPolicy is DEFAULT_POLICY_TEXT parsed. */
export function defaultPolicy (): Policy {
  return parsePolicy(DEFAULT_POLICY_TEXT).policy!
}
