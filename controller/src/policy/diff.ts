import { protocolHasPorts, type CapMap, type FilterRule } from '@warren/protocol'
import { DEFAULT_MESH_IPV6, hostCidr, meshSources } from './addr.js'
import { mergeRanges } from './build-filter.js'
import { capChanges, capsBetween, capsBySource, sortCapChanges, type CapChange } from './cap-diff.js'
import { compilePolicy, destinationMatches, resolveSubject, subjectKeys, type CompiledPolicy, type Subject } from './compile-policy.js'
import { createPolicyEngine } from './engine.js'
import { portsText, protoName } from './explain.js'
import { ALL_PORTS } from './parse.js'
import { policyRules, type Policy, type PolicyNode, type PolicyUser, type PortRange } from './types.js'
import { createUserDirectory, expandIdpGroups, hasRole } from './users.js'

/** Access is one allowed (source, destination, protocol, ports) as `diff` shows it, by name. */
export interface Access {
  kind: 'identity' | 'node'
  src: string
  dst: string
  proto: string
  ports: string
}

/** PolicyDiff: traffic gained and lost, and capabilities gained, lost or changed (values), in both views. */
export interface PolicyDiff { gained: Access[], lost: Access[], caps: CapChange[] }

/**
 * diff shows what access a new policy gains and loses against the old one, in two
 * views: between identities (users, tags and host aliases named in either policy, and
 * `(other users)` for everyone else, so it is useful before devices join; skipped past
 * 200 identities) and between the current nodes, by node name. It compares the
 * capabilities of grants with `app` (by name and values) in the same two views.
 */
export function diff (oldPolicy: Policy, newPolicy: Policy, nodes: readonly PolicyNode[], users: readonly PolicyUser[]): PolicyDiff {
  const gained: Access[] = []
  const lost: Access[] = []
  const caps: CapChange[] = []
  const record = (kind: Access['kind'], src: string, dst: string, proto: number, before: PortRange[], after: PortRange[]): void => {
    const plus = subtract(after, before)
    const minus = subtract(before, after)
    if (plus.length > 0) gained.push({ kind, src, dst, proto: protoName(proto), ports: protocolHasPorts(proto) ? portsText(plus) : '*' })
    if (minus.length > 0) lost.push({ kind, src, dst, proto: protoName(proto), ports: protocolHasPorts(proto) ? portsText(minus) : '*' })
  }

  // identities
  const oldCp = compilePolicy(oldPolicy, users)
  const newCp = compilePolicy(newPolicy, users)
  const protos = [...new Set([...oldCp.rules, ...newCp.rules].flatMap(r => r.protos))].sort((a, b) => a - b)
  const names = identityNames(oldPolicy, newPolicy, users)
  const subjects = (cp: CompiledPolicy): Subject[] => names.map(n => resolveSubjectLenient(cp, n))
  const oldSubjects = subjects(oldCp)
  const newSubjects = subjects(newCp)
  const anyCaps = [...oldCp.rules, ...newCp.rules].some(r => r.caps !== undefined)
  names.forEach((srcName, i) => {
    names.forEach((dstName, j) => {
      for (const proto of protos) {
        record('identity', srcName, dstName, proto,
          allowedPorts(oldCp, oldSubjects[i]!, oldSubjects[j]!, proto), allowedPorts(newCp, newSubjects[i]!, newSubjects[j]!, proto))
      }
      if (anyCaps) {
        caps.push(...capChanges('identity', srcName, dstName,
          capsBetween(oldCp, oldSubjects[i]!, oldSubjects[j]!), capsBetween(newCp, newSubjects[i]!, newSubjects[j]!)))
      }
    })
  })

  // nodes, through the compiler's filters
  if (nodes.length > 0) {
    const before = createPolicyEngine(oldPolicy, users)
    const after = createPolicyEngine(newPolicy, users)
    before.setNodes(nodes)
    after.setNodes(nodes)
    const label = sourceLabeler(nodes, [oldPolicy, newPolicy])
    const memo = new Map<FilterRule[], Map<FilterRule[], DiffRow[]>>()
    const capsMemo = new Map<FilterRule[], Map<string, CapMap>>()
    const capsOf = (f: FilterRule[]): Map<string, CapMap> => {
      let m = capsMemo.get(f)
      if (m === undefined) { m = capsBySource(f, label); capsMemo.set(f, m) }
      return m
    }
    for (const n of nodes) {
      const fa = before.filterFor(n.id)
      const fb = after.filterFor(n.id)
      let inner = memo.get(fa)
      if (inner === undefined) { inner = new Map(); memo.set(fa, inner) }
      let rows = inner.get(fb)
      if (rows === undefined) { rows = filterDiffRows(fa, fb, label); inner.set(fb, rows) }
      // a router's forward rules reach the subnet behind it, not the router: `10.1.0.0/16 via router`
      for (const [src, via, proto, a, b] of rows) if (src !== n.name) record('node', src, via === '' ? n.name : `${via} via ${n.name}`, proto, a, b)
      if (anyCaps) {
        const ca = capsOf(fa)
        const cb = capsOf(fb)
        for (const src of new Set([...ca.keys(), ...cb.keys()])) {
          if (src !== n.name) caps.push(...capChanges('node', src, n.name, ca.get(src) ?? {}, cb.get(src) ?? {}))
        }
      }
    }
  }
  return { gained: groupProtos(gained), lost: groupProtos(lost), caps: sortCapChanges(caps) }
}

/** groupProtos joins rows that differ only in protocol (`tcp,udp`) and sorts them. */
function groupProtos (rows: Access[]): Access[] {
  const byKey = new Map<string, Access>()
  for (const r of rows) {
    const key = `${r.kind}\u0000${r.src}\u0000${r.dst}\u0000${r.ports}`
    const have = byKey.get(key)
    if (have === undefined) byKey.set(key, { ...r })
    else have.proto = `${have.proto},${r.proto}`
  }
  const order = (x: Access, y: Access): number => x.kind.localeCompare(y.kind) || x.src.localeCompare(y.src) || x.dst.localeCompare(y.dst) || x.proto.localeCompare(y.proto) || x.ports.localeCompare(y.ports)
  return [...byKey.values()].sort(order)
}

/** OTHER_USERS stands for every user the policies do not name: they all have the same access. */
export const OTHER_USERS = '(other users)'
const OTHER_USER_NAME = '\u0000other'

/** MAX_IDENTITIES bounds the identity view of diff (it is quadratic); beyond it only nodes are compared. */
const MAX_IDENTITIES = 200

function identityNames (a: Policy, b: Policy, users: readonly PolicyUser[]): string[] {
  const out = new Set<string>([OTHER_USERS])
  const dir = createUserDirectory(users)
  const known = new Map(users.map(u => [u.name.toLowerCase(), `${u.name.toLowerCase()}@`]))
  const addUser = (token: string): void => {
    const r = dir.resolve(token)
    out.add(r.known ? known.get(r.name)! : token)
  }
  for (const p of [a, b]) {
    for (const g of p.groups.values()) for (const m of expandIdpGroups(g.members, users)) addUser(m)
    for (const r of policyRules(p)) {
      for (const s of [...r.src, ...r.dst]) {
        if (s.selector.kind === 'user') addUser(s.selector.token)
        // users of a domain (user:*@example.com) have access others do not: each is named
        const domain = s.selector.kind === 'domain' ? `@${s.selector.domain}` : undefined
        if (domain !== undefined) for (const u of users) if (u.email?.toLowerCase().endsWith(domain) === true) addUser(`${u.name}@`)
        // and so do the users of a role (autogroup:admin)
        if (s.selector.kind === 'role') for (const u of users) if (hasRole(u, s.selector.role)) addUser(`${u.name}@`)
      }
    }
    for (const t of p.tagOwners.keys()) out.add(t)
    for (const h of p.hosts.keys()) out.add(h)
  }
  return out.size > MAX_IDENTITIES ? [] : [...out].sort()
}

/** resolveSubjectLenient: a tag that one side of a diff lacks still names tagged nodes; a missing host names nothing. */
function resolveSubjectLenient (cp: CompiledPolicy, name: string): Subject {
  if (name === OTHER_USERS) return { label: name, keys: subjectKeys(cp, OTHER_USER_NAME, [], []), user: OTHER_USER_NAME, addrs: [] }
  if (name.startsWith('tag:')) return { label: name, keys: subjectKeys(cp, undefined, [name], []), addrs: [] }
  try {
    return resolveSubject(cp, name)
  } catch {
    return { label: name, keys: new Set(), addrs: [] }
  }
}

function allowedPorts (cp: CompiledPolicy, src: Subject, dst: Subject, proto: number): PortRange[] {
  const ranges: PortRange[] = []
  for (const r of cp.rules) {
    if (!r.protos.includes(proto) || !r.srcKeys.some(k => src.keys.has(k))) continue
    for (const d of r.dsts) if (destinationMatches(d.key, src, dst)) ranges.push(...(protocolHasPorts(proto) ? d.ports : [ALL_PORTS]))
  }
  return mergeRanges(ranges)
}

function sourceLabeler (nodes: readonly PolicyNode[], policies: Policy[]): (src: string) => string {
  const byAddr = new Map<string, string>()
  for (const n of nodes) {
    byAddr.set(hostCidr(n.ipv4).text, n.name)
    byAddr.set(hostCidr(n.ipv6).text, n.name)
  }
  for (const p of policies) for (const [name, h] of p.hosts) if (!byAddr.has(h.cidr.text)) byAddr.set(h.cidr.text, name)
  for (const c of meshSources(DEFAULT_MESH_IPV6)) byAddr.set(c.text, '*')
  return src => byAddr.get(src) ?? src
}

/** DiffRow is one source's ports on one protocol before and after, to the node (`via` empty) or to a range it forwards to. */
type DiffRow = [src: string, via: string, proto: number, before: PortRange[], after: PortRange[]]

function filterDiffRows (a: FilterRule[], b: FilterRule[], label: (s: string) => string): DiffRow[] {
  if (a === b) return []
  const collect = (f: FilterRule[]): Map<string, PortRange[]> => {
    const m = new Map<string, PortRange[]>()
    for (const rule of f) {
      for (const via of rule.dsts ?? ['']) {
        for (const s of rule.srcs) {
          for (const proto of rule.protos) {
            const key = `${label(s)}\u0000${via}\u0000${proto}`
            m.set(key, [...(m.get(key) ?? []), ...rule.ports])
          }
        }
      }
    }
    return m
  }
  const ma = collect(a)
  const mb = collect(b)
  const rows: DiffRow[] = []
  for (const key of new Set([...ma.keys(), ...mb.keys()])) {
    const before = mergeRanges(ma.get(key) ?? [])
    const after = mergeRanges(mb.get(key) ?? [])
    if (portsText(before) === portsText(after)) continue
    const [src, via, proto] = key.split('\u0000') as [string, string, string]
    rows.push([src, via, Number(proto), before, after])
  }
  return rows
}

/** subtract returns the ports in `a` that are not in `b` (both merged and sorted). */
export function subtract (a: readonly PortRange[], b: readonly PortRange[]): PortRange[] {
  const out: PortRange[] = []
  for (const r of a) {
    let pieces = [{ ...r }]
    for (const cut of b) {
      pieces = pieces.flatMap(p => {
        if (cut.last < p.first || cut.first > p.last) return [p]
        const keep: PortRange[] = []
        if (cut.first > p.first) keep.push({ first: p.first, last: cut.first - 1 })
        if (cut.last < p.last) keep.push({ first: cut.last + 1, last: p.last })
        return keep
      })
    }
    out.push(...pieces)
  }
  return out
}
