import type { FilterRule, NodeAttrs } from '@warren/protocol'
import { cidrContains, hostCidr } from './addr.js'
import { buildForwardFilter, routeParts, routeOverlaps, routerRoutes } from './route-filter.js'
import { compilePolicy, ROUTES_KEY, SELF_KEY, subjectKeys, type CompiledPolicy, type CompiledRule } from './compile-policy.js'
import { buildFilter, sameFilter, type FilterPart } from './build-filter.js'
import { buildCapFilter } from './cap-filter.js'
import { attrsForKeys } from './node-attrs.js'
import { routesServedBy } from './via.js'
import { exitFamilies, internetKeysServedBy, internetParts } from './internet.js'
import { baseKey } from './posture-keys.js'
import { SourceSets } from './source-sets.js'
import type { Cidr, Policy, PolicyNode, PolicyUser } from './types.js'

const NO_ATTRS: NodeAttrs = Object.freeze({})

/**
 * NodeChange is the set of node ids whose peers or filter changed after one node
 * change, with the details a map server needs to send deltas: which nodes gained or
 * lost the changed node as a peer (peer relations are symmetric, so these are the
 * only pairs that can change), and whose filter changed (the changed node included).
 */
export interface NodeChange extends Set<string> {
  peersGained: Set<string>
  peersLost: Set<string>
  filterChanged: Set<string>
}

/**
 * PolicyEngine keeps the compiled policy and the nodes, indexed by selector, and
 * answers per node: its peers (nodes it may reach or that may reach it, no others) and
 * its inbound filter. A node change touches only the rules and nodes it matches.
 */
export interface PolicyEngine {
  readonly policy: Policy
  /** setNodes replaces all nodes at once (startup); it reports nothing */
  setNodes: (nodes: readonly PolicyNode[]) => void
  /** upsertNode adds or changes a node and returns the ids whose peers or filter changed */
  upsertNode: (node: PolicyNode) => NodeChange
  /** removeNode removes a node and returns the ids whose peers or filter changed */
  removeNode: (id: string) => NodeChange
  /** peersOf is a snapshot of the node's peers (never the node itself); empty for unknown ids */
  peersOf: (id: string) => ReadonlySet<string>
  /** filterFor is the node's inbound filter, canonical and sorted; the same array while it is unchanged; do not mutate it */
  filterFor: (id: string) => FilterRule[]
  /** setPolicy swaps policy and users whole and returns the ids whose peers, filter or attributes changed */
  setPolicy: (policy: Policy, users: readonly PolicyUser[]) => Set<string>
  /** attrsFor is the node's nodeAttrs (its own, for its map only); empty for unknown ids */
  attrsFor: (id: string) => NodeAttrs
  nodeCount: () => number
}

interface NodeRec {
  node: PolicyNode
  addrs: Cidr[]
  /** routes: the approved subnet routes it serves (a source of rules with `*`) */
  routes: Cidr[]
  keys: string[]
  /** routeKeys: address keys that overlap the routes the node serves, so it is a peer of their sources */
  routeKeys: string[]
  user?: string
  sig: string
  attrs: NodeAttrs
  attrsJson: string
}

/**
 * FilterSource is one rule destination that applies to a node; `self` is the owner for
 * autogroup:self; `via` is the range inside the node's served routes that the rule lets
 * its sources reach through the node (a subnet router's forward filter).
 */
interface FilterSource { r: number, rule: CompiledRule, dstIndex: number, self?: string, via?: string }

interface SigInfo {
  members: Set<string>
  sources: FilterSource[]
  filter?: FilterRule[]
}

/** EngineOptions: `meshIpv6` is the mesh's IPv6 /48 (the controller's ULA), part of what `*` means as a source. */
export interface EngineOptions { meshIpv6?: string }

/** createPolicyEngine compiles a policy for a set of users; add nodes with setNodes/upsertNode. */
export function createPolicyEngine (policy: Policy, users: readonly PolicyUser[], opts: EngineOptions = {}): PolicyEngine {
  let state = new EngineState(compilePolicy(policy, users, opts.meshIpv6))
  return {
    get policy () { return state.cp.policy },
    setNodes (nodes) {
      const previous = state
      state = new EngineState(state.cp)
      for (const n of nodes) state.add(state.record(n, previous.nodes.get(n.id)))
    },
    upsertNode: node => state.upsert(node),
    removeNode: id => state.remove(id),
    peersOf: id => state.peersOf(id),
    filterFor: id => {
      const rec = state.nodes.get(id)
      return rec === undefined ? [] : state.filterOfSig(rec.sig)
    },
    attrsFor: id => state.nodes.get(id)?.attrs ?? NO_ATTRS,
    setPolicy (newPolicy, newUsers) {
      const next = new EngineState(compilePolicy(newPolicy, newUsers, opts.meshIpv6))
      for (const rec of state.nodes.values()) next.add(next.record(rec.node, rec))
      const changed = state.diffAgainst(next)
      state = next
      return changed
    },
    nodeCount: () => state.nodes.size
  }
}

function emptyChange (): NodeChange {
  return Object.assign(new Set<string>(), { peersGained: new Set<string>(), peersLost: new Set<string>(), filterChanged: new Set<string>() })
}

class EngineState {
  readonly nodes = new Map<string, NodeRec>()
  /** sets: nodes by selector key */
  private readonly sets = new Map<string, Set<string>>()
  /** srcRules: rules (positions in cp.rules) by a key of their src */
  private readonly srcRules = new Map<string, number[]>()
  /** dstRules: [rule, destination] by the destination's key */
  private readonly dstRules = new Map<string, Array<[number, number]>>()
  private readonly selfDsts: Array<[number, number]> = []
  /** sigs: nodes that the same rule destinations apply to share one filter */
  private readonly sigs = new Map<string, SigInfo>()
  /** sigsByRule: `r` (or `r@user` for autogroup:self) -> signatures that use rule r */
  private readonly sigsByRule = new Map<string, Set<string>>()
  /** allIds: immutable snapshot of all ids, rebuilt lazily after a change */
  private allIds: Set<string> | undefined
  /** snapshots: immutable copies of `sets` entries for peersOf, dropped when a node with the key comes or goes */
  private readonly snapshots = new Map<string, Set<string>>()
  /** sources: each distinct set of rule sources as one sorted list, shared by the filters that list it */
  private readonly sources = new SourceSets(k => this.addrsOfKey(k))

  constructor (readonly cp: CompiledPolicy) {
    cp.rules.forEach((rule, r) => {
      for (const k of rule.srcKeys) push(this.srcRules, k, r)
      rule.dsts.forEach((d, i) => {
        if (d.key === SELF_KEY) this.selfDsts.push([r, i])
        else push(this.dstRules, d.key, [r, i])
      })
    })
  }

  /** record indexes a node; the addresses of `previous` are kept when they are the same (parsing is the costly part). */
  record (node: PolicyNode, previous?: NodeRec): NodeRec {
    const addrs = previous !== undefined && previous.node.ipv4 === node.ipv4 && previous.node.ipv6 === node.ipv6
      ? previous.addrs
      : [hostCidr(node.ipv4), hostCidr(node.ipv6)]
    // the approved routes it serves, without exit routes (an exit node's traffic is not a source of `*`)
    const routes = previous !== undefined && sameRoutes(previous.node, node) ? previous.routes : routerRoutes(node)
    const user = node.tags.length === 0 && node.user !== undefined ? node.user.toLowerCase() : undefined
    const subject = subjectKeys(this.cp, user, node.tags, addrs, node.postureAttrs)
    if (routes.length > 0) subject.add(ROUTES_KEY)
    const keys = [...subject].sort()
    const parts: string[] = []
    for (const k of keys) for (const [r, i] of this.dstRules.get(k) ?? []) parts.push(`${r}.${i}`)
    if (user !== undefined) for (const [r, i] of this.selfDsts) parts.push(`${r}.${i}@${user}`)
    const routeKeys: string[] = []
    if (routes.length > 0) {
      const served = routesServedBy(this.cp.cidrs, node.tags)
      for (const [key, cidr] of served) if (routes.some(r => routeOverlaps(r, cidr))) routeKeys.push(key)
      parts.push(...routeParts(routes, served, this.dstRules))
    }
    // an exit node: a peer of autogroup:internet's sources (with `via`, only those naming
    // one of its tags), forwarding them to the internet only
    const exit = exitFamilies(node)
    if (exit.length > 0) {
      const internetKeys = internetKeysServedBy(this.dstRules.keys(), node.tags)
      routeKeys.push(...internetKeys)
      parts.push(...internetParts(exit, internetKeys, this.dstRules))
    }
    const sig = [...new Set(parts)].sort().join(' ')
    const attrs = this.cp.nodeAttrs.length === 0 ? NO_ATTRS : attrsForKeys(this.cp.nodeAttrs, subject)
    const rec: NodeRec = { node, addrs, routes, keys, routeKeys, sig, attrs, attrsJson: JSON.stringify(attrs) }
    if (user !== undefined) rec.user = user
    return rec
  }

  add (rec: NodeRec): void {
    const id = rec.node.id
    this.nodes.set(id, rec)
    for (const k of [...rec.keys, ...rec.routeKeys]) {
      let set = this.sets.get(k)
      if (set === undefined) { set = new Set(); this.sets.set(k, set) }
      set.add(id)
    }
    let info = this.sigs.get(rec.sig)
    if (info === undefined) {
      info = { members: new Set(), sources: this.sourcesOf(rec.sig) }
      this.sigs.set(rec.sig, info)
      for (const ruleKey of this.sigRuleKeys(info)) {
        let set = this.sigsByRule.get(ruleKey)
        if (set === undefined) { set = new Set(); this.sigsByRule.set(ruleKey, set) }
        set.add(rec.sig)
      }
    }
    info.members.add(id)
    this.allIds = undefined
    this.sources.invalidate(rec.keys)
    for (const k of [...rec.keys, ...rec.routeKeys]) this.snapshots.delete(k)
  }

  private delete (rec: NodeRec): void {
    const id = rec.node.id
    this.nodes.delete(id)
    for (const k of [...rec.keys, ...rec.routeKeys]) {
      const set = this.sets.get(k)
      set?.delete(id)
      if (set?.size === 0) this.sets.delete(k)
    }
    const info = this.sigs.get(rec.sig)
    if (info !== undefined) {
      info.members.delete(id)
      if (info.members.size === 0) {
        this.sigs.delete(rec.sig)
        for (const ruleKey of this.sigRuleKeys(info)) {
          const s = this.sigsByRule.get(ruleKey)
          s?.delete(rec.sig)
          if (s?.size === 0) this.sigsByRule.delete(ruleKey)
        }
      }
    }
    this.allIds = undefined
    this.sources.invalidate(rec.keys)
    for (const k of [...rec.keys, ...rec.routeKeys]) this.snapshots.delete(k)
  }

  private sourcesOf (sig: string): FilterSource[] {
    if (sig === '') return []
    return sig.split(' ').map(part => {
      const m = /^(\d+)\.(\d+)(?:@(.*)|>(.*))?$/.exec(part)!
      const r = Number(m[1])
      const src: FilterSource = { r, rule: this.cp.rules[r]!, dstIndex: Number(m[2]) }
      if (m[3] !== undefined) src.self = m[3]
      if (m[4] !== undefined) src.via = m[4]
      return src
    })
  }

  private sigRuleKeys (info: SigInfo): Set<string> {
    const out = new Set<string>()
    for (const s of info.sources) out.add(s.self === undefined ? `${s.r}` : `${s.r}@${s.self}`)
    return out
  }

  /** filterOfSig builds (once, until invalidated) the filter shared by a signature's nodes. */
  filterOfSig (sig: string): FilterRule[] {
    let info = this.sigs.get(sig)
    if (info === undefined) info = { members: new Set(), sources: this.sourcesOf(sig) }
    if (info.filter === undefined) {
      const part = (s: FilterSource): FilterPart => {
        const dst = s.rule.dsts[s.dstIndex]!
        const srcs = s.self === undefined
          ? this.sources.of(s.rule, dst.family)
          : dst.family === undefined ? this.selfSources(s.rule, s.self) : ofFamily(this.selfSources(s.rule, s.self), dst.family)
        return { srcs, protos: s.rule.protos, ports: dst.ports }
      }
      const traffic = info.sources.filter(s => s.rule.caps === undefined)
      const inbound = traffic.filter(s => s.via === undefined)
      const forward = traffic.filter(s => s.via !== undefined).map(s => ({ via: s.via!, part: part(s) }))
      // capabilities are given to the node's own sources only, never through its routes
      const caps = info.sources.filter(s => s.rule.caps !== undefined && s.via === undefined).map(s => ({ rule: s.r, srcs: part(s).srcs, caps: s.rule.caps! }))
      info.filter = [...buildFilter(inbound.map(part)), ...buildForwardFilter(forward), ...buildCapFilter(caps)]
    }
    return info.filter
  }

  /**
   * addrsOfKey: the addresses of the nodes a source key matches (ROUTES_KEY: the routes they
   * serve); a range with a posture (`10.0.0.0/8|posture:x`) stands for the addresses of nodes
   * in it that meet it.
   */
  private * addrsOfKey (k: string): Generator<Cidr> {
    const range = this.cp.cidrs.get(baseKey(k))
    for (const id of this.sets.get(k) ?? []) {
      const rec = this.nodes.get(id)!
      yield * (k === ROUTES_KEY ? rec.routes : range === undefined ? rec.addrs : rec.addrs.filter(a => cidrContains(range, a)))
    }
  }

  /** selfSources: the owner's untagged nodes that the rule's src matches, by the addresses it matches. */
  private * selfSources (rule: CompiledRule, user: string): Generator<Cidr> {
    for (const id of this.sets.get(`user:${user}`) ?? []) {
      const rec = this.nodes.get(id)!
      if (rule.srcNodeKeys.some(k => rec.keys.includes(k)) || rule.srcKeys.includes('*')) {
        yield * rec.addrs
        continue
      }
      for (const k of rule.srcKeys) {
        const cidr = this.cp.cidrs.get(k)
        if (cidr !== undefined && rec.keys.includes(k)) yield * rec.addrs.filter(a => cidrContains(cidr, a))
      }
    }
  }

  private rulesWithSource (rec: NodeRec): Set<number> {
    const out = new Set<number>()
    for (const k of rec.keys) for (const r of this.srcRules.get(k) ?? []) out.add(r)
    return out
  }

  private matchesSource (rule: CompiledRule, rec: NodeRec): boolean {
    return rule.srcKeys.some(k => rec.keys.includes(k))
  }

  peersOf (id: string): ReadonlySet<string> {
    const rec = this.nodes.get(id)
    if (rec === undefined) return new Set()
    const out = new Set<string>()
    // keys whose nodes are peers: added at the end, so that one key alone (a group) is a view of its snapshot, not a copy
    const keys = new Set<string>()
    let all = false
    const addKey = (key: string): void => {
      if (all || keys.has(key)) return
      const set = key === '*' ? this.nodes : this.sets.get(key)
      if (set === undefined) return
      if (set.size === this.nodes.size) { all = true; return }
      keys.add(key)
    }
    // as a destination: the sources of every rule destination that applies to it
    for (const s of this.sigs.get(rec.sig)?.sources ?? []) {
      if (all) break
      if (s.self === undefined) { for (const k of s.rule.srcKeys) addKey(k); continue }
      for (const x of this.sets.get(`user:${s.self}`) ?? []) if (this.matchesSource(s.rule, this.nodes.get(x)!)) out.add(x)
    }
    // as a source: the destinations of every rule whose src it matches
    for (const r of this.rulesWithSource(rec)) {
      if (all) break
      for (const d of this.cp.rules[r]!.dsts) {
        if (d.key !== SELF_KEY) addKey(d.key)
        else if (rec.user !== undefined) for (const x of this.sets.get(`user:${rec.user}`) ?? []) out.add(x)
      }
    }
    if (all) {
      this.allIds ??= new Set(this.nodes.keys())
      return allExcept(this.allIds, id)
    }
    if (out.size === 0 && keys.size === 1) return allExcept(this.snapshotOf([...keys][0]!), id)
    for (const k of keys) for (const x of this.sets.get(k)!) out.add(x)
    out.delete(id)
    return out
  }

  private snapshotOf (key: string): Set<string> {
    let snap = this.snapshots.get(key)
    if (snap === undefined) { snap = new Set(this.sets.get(key)); this.snapshots.set(key, snap) }
    return snap
  }

  /** candidateSigs: signatures whose filter may list this node's addresses. */
  private candidateSigs (rec: NodeRec, out: Set<string>): void {
    for (const r of this.rulesWithSource(rec)) {
      const rule = this.cp.rules[r]!
      if (rule.srcNodeKeys.some(k => rec.keys.includes(k))) for (const s of this.sigsByRule.get(`${r}`) ?? []) out.add(s)
      if (rec.user !== undefined) for (const s of this.sigsByRule.get(`${r}@${rec.user}`) ?? []) out.add(s)
    }
  }

  upsert (node: PolicyNode): NodeChange {
    const old = this.nodes.get(node.id)
    const rec = this.record(node, old)
    if (old !== undefined && sameIdentity(old, rec)) {
      old.node = node
      return emptyChange()
    }
    return this.change(node.id, old, rec)
  }

  remove (id: string): NodeChange {
    const old = this.nodes.get(id)
    return old === undefined ? emptyChange() : this.change(id, old, undefined)
  }

  private change (id: string, old: NodeRec | undefined, rec: NodeRec | undefined): NodeChange {
    const oldPeers = old === undefined ? new Set<string>() : this.peersOf(id)
    const candidates = new Set<string>()
    if (old !== undefined) this.candidateSigs(old, candidates)
    if (rec !== undefined) this.candidateSigs(rec, candidates)
    const before = new Map<string, FilterRule[]>()
    for (const sig of candidates) before.set(sig, this.filterOfSig(sig))
    const ownBefore = old === undefined ? [] : this.filterOfSig(old.sig)

    if (old !== undefined) this.delete(old)
    if (rec !== undefined) this.add(rec)

    const result = emptyChange()
    for (const [sig, prev] of before) {
      const info = this.sigs.get(sig)
      if (info === undefined) continue
      info.filter = undefined
      // an unchanged filter keeps its array, so consumers can compare by reference
      if (sameFilter(this.filterOfSig(sig), prev)) info.filter = prev
      else for (const m of info.members) if (m !== id) result.filterChanged.add(m)
    }
    const newPeers = rec === undefined ? new Set<string>() : this.peersOf(id)
    for (const p of newPeers) if (!oldPeers.has(p)) result.peersGained.add(p)
    for (const p of oldPeers) if (!newPeers.has(p)) result.peersLost.add(p)
    if (rec !== undefined) {
      if (!sameFilter(this.filterOfSig(rec.sig), ownBefore)) result.filterChanged.add(id)
      if (result.peersGained.size > 0 || result.peersLost.size > 0) result.add(id)
    }
    for (const s of [result.peersGained, result.peersLost, result.filterChanged]) for (const x of s) result.add(x)
    return result
  }

  /** diffAgainst lists the nodes whose peers, filter or attributes differ in `next` (same nodes, new policy). */
  diffAgainst (next: EngineState): Set<string> {
    const changed = new Set<string>()
    const filterSame = new Map<string, boolean>()
    for (const [id, rec] of this.nodes) {
      const nextRec = next.nodes.get(id)!
      const pair = `${rec.sig}|${nextRec.sig}`
      let same = filterSame.get(pair)
      if (same === undefined) {
        same = sameFilter(this.filterOfSig(rec.sig), next.filterOfSig(nextRec.sig))
        filterSame.set(pair, same)
      }
      if (!same || rec.attrsJson !== nextRec.attrsJson || !sameSet(this.peersOf(id), next.peersOf(id))) changed.add(id)
    }
    return changed
  }
}

function * ofFamily (cidrs: Iterable<Cidr>, family: 4 | 6): Generator<Cidr> {
  for (const c of cidrs) if (c.family === family) yield c
}

function push<K, V> (m: Map<K, V[]>, k: K, v: V): void {
  const list = m.get(k)
  if (list === undefined) m.set(k, [v])
  else list.push(v)
}

function sameIdentity (a: NodeRec, b: NodeRec): boolean {
  return a.sig === b.sig && a.keys.join(' ') === b.keys.join(' ') && a.routeKeys.join(' ') === b.routeKeys.join(' ') &&
    a.addrs.every((x, i) => x.text === b.addrs[i]?.text) &&
    a.routes.length === b.routes.length && a.routes.every((x, i) => x.text === b.routes[i]?.text)
}

function sameRoutes (a: PolicyNode, b: PolicyNode): boolean {
  const same = (x: string[] = [], y: string[] = []): boolean => x.length === y.length && x.every((r, i) => r === y[i])
  return same(a.approvedRoutes, b.approvedRoutes) && same(a.advertisedRoutes, b.advertisedRoutes)
}

function sameSet (a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  if (a.size !== b.size) return false
  for (const x of a) if (!b.has(x)) return false
  return true
}

/** allExcept is a read-only view of an immutable id set without one id: "everyone" in O(1). */
function allExcept (all: Set<string>, self: string): ReadonlySet<string> {
  const has = (x: string): boolean => x !== self && all.has(x)
  const size = all.has(self) ? all.size - 1 : all.size
  function * values (): Generator<string, undefined> { for (const x of all) if (x !== self) yield x; return undefined }
  const view: ReadonlySet<string> = {
    has,
    size,
    forEach (cb, thisArg) { for (const x of values()) cb.call(thisArg, x, x, view) },
    keys: values,
    values,
    * entries (): Generator<[string, string], undefined> { for (const x of values()) yield [x, x]; return undefined },
    [Symbol.iterator]: values
  }
  return view
}
