import { isExitRoute, isTag, offersExitNode, type RouteHolder } from '@warren/protocol'
import { cidrContains, parseCidr } from './addr.js'
import { didYouMean } from './errors.js'
import { ROLE_AUTOGROUPS, isUserAutogroup, isUserToken, memberMatches } from './users.js'
import type { AutoApprovers, Cidr, Policy, PolicyNode, PolicyUser } from './types.js'
import type { JsonLike, SectionReader } from './section-reader.js'

const SECTION_KEYS = ['routes', 'exitNode']

/**
 * parseAutoApprovers reads `autoApprovers` as Tailscale writes it:
 * `{"routes": {"192.168.1.0/24": ["group:eng", "tag:router"]}, "exitNode": ["tag:exit"]}`.
 * Approvers are users, groups, tags, autogroup:member or a role's autogroup; each route is a CIDR.
 */
export function parseAutoApprovers<N extends JsonLike> (section: N, policy: Policy, r: SectionReader<N>): AutoApprovers {
  const out: AutoApprovers = { routes: [], exitNode: [] }
  for (const prop of r.object(section, 'autoApprovers') ?? []) {
    const [keyNode, value] = prop.children as [N, N]
    const key = String(keyNode.value)
    if (key === 'routes') {
      for (const route of r.object(value, 'autoApprovers.routes') ?? []) {
        const [cidrNode, approversNode] = route.children as [N, N]
        const text = String(cidrNode.value)
        const cidr = parseCidr(text)
        if (cidr === undefined || !text.includes('/')) r.err(cidrNode, `autoApprovers.routes key "${text}" must be a CIDR such as 192.168.1.0/24 or fd00:1::/64`)
        // the approvers are checked either way, so one pass reports every problem
        const names = approvers(approversNode, `autoApprovers.routes["${text}"]`, policy, r)
        if (cidr !== undefined && text.includes('/')) out.routes.push({ cidr, approvers: names })
      }
    } else if (key === 'exitNode') {
      out.exitNode = approvers(value, 'autoApprovers.exitNode', policy, r)
    } else {
      r.err(keyNode, `unknown key "${key}" in autoApprovers`, didYouMean(key, SECTION_KEYS))
    }
  }
  return out
}

function approvers<N extends JsonLike> (n: N, what: string, policy: Policy, r: SectionReader<N>): string[] {
  const out: string[] = []
  for (const { value, node } of r.strings(n, what)) {
    if (value.startsWith('group:')) {
      if (!policy.groups.has(value)) { r.err(node, `group ${value} is not defined`, didYouMean(value, policy.groups.keys())); continue }
    } else if (value.startsWith('tag:')) {
      if (!isTag(value) || !policy.tagOwners.has(value)) { r.err(node, `tag ${value} has no tagOwners entry`, didYouMean(value, policy.tagOwners.keys())); continue }
    } else if (value.startsWith('autogroup:')) {
      if (!isUserAutogroup(value)) { r.err(node, `${value} cannot approve routes; use users, groups, tags, autogroup:member or a role (${ROLE_AUTOGROUPS.join(', ')})`); continue }
    } else if (!isUserToken(value)) {
      r.err(node, `"${value}" is not a user, group or tag: write alice@, alice@example.com, group:x or tag:x`)
      continue
    } else {
      r.useUser(value, node)
    }
    out.push(value.startsWith('tag:') || value.startsWith('group:') || value.startsWith('autogroup:') ? value : value.toLowerCase())
  }
  return out
}

/**
 * approverMatches says whether one approver names a node: a tagged node by its tags, an
 * untagged one by its user (name@ or email), its groups, or autogroup:member.
 */
function approverMatches (policy: Policy, approver: string, node: PolicyNode, user: PolicyUser | undefined): boolean {
  if (node.tags.length > 0) return approver.startsWith('tag:') && node.tags.includes(approver)
  if (user === undefined) return false
  const isUser = (token: string): boolean => memberMatches(token, user)
  if (approver.startsWith('group:')) return (policy.groups.get(approver)?.members ?? []).some(isUser)
  return isUser(approver)
}

/**
 * autoApprovedRoutes lists the routes a node advertises that the policy approves at once:
 * a subnet route is approved when an autoApprovers.routes entry whose CIDR contains it (the
 * same range or a wider one, as in Tailscale) names the node's tag, user or group; the
 * default routes of an exit node (both, never one) when autoApprovers.exitNode names it.
 */
export function autoApprovedRoutes (policy: Policy, node: PolicyNode & RouteHolder, users: readonly PolicyUser[]): string[] {
  const rules = policy.autoApprovers?.routes ?? []
  const exitApprovers = policy.autoApprovers?.exitNode ?? []
  if (rules.length === 0 && exitApprovers.length === 0) return []
  const user = node.user === undefined ? undefined : users.find(u => u.name.toLowerCase() === node.user!.toLowerCase())
  const names = (a: string): boolean => approverMatches(policy, a, node, user)
  const approving = rules.filter(r => r.approvers.some(names)).map(r => r.cidr)
  const advertised = node.advertisedRoutes ?? []
  const exit = offersExitNode(advertised) && exitApprovers.some(names)
  return advertised.filter(route => {
    if (isExitRoute(route)) return exit
    const c = parseCidr(route)
    return c !== undefined && approving.some((a: Cidr) => cidrContains(a, c))
  })
}
