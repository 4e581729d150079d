import type { CompiledRule } from './compile-policy.js'
import type { SortedSources } from './build-filter.js'
import type { Cidr } from './types.js'

/**
 * SourceSets holds the addresses that a rule's sources stand for (its groups', tags' and
 * users' nodes, the routes of `*`, its ranges) once per distinct set of sources: sorted,
 * without duplicates, with their texts. Every filter that lists them shares that one list,
 * so a group of 35,000 users named by 400 rules is one list, built again only when one
 * of its nodes comes or goes, not once per rule and per node a rule reaches.
 */
export class SourceSets {
  private readonly lists = new Map<string, SortedSources>()
  /** dependents: selector key -> the list ids that hold its nodes' addresses */
  private readonly dependents = new Map<string, Set<string>>()
  private readonly ids = new Map<CompiledRule, string>()

  /** `addrsOf(key)` lists the addresses of the nodes a selector key matches (a node may repeat across keys). */
  constructor (private readonly addrsOf: (key: string) => Iterable<Cidr>) {}

  /** of is the rule's sources, of one address family when `family` is given. */
  of (rule: CompiledRule, family?: 4 | 6): SortedSources {
    const id = `${this.idOf(rule)}|${family ?? ''}`
    let list = this.lists.get(id)
    if (list === undefined) {
      list = this.build(rule, family)
      this.lists.set(id, list)
      for (const k of rule.srcNodeKeys) {
        let set = this.dependents.get(k)
        if (set === undefined) { set = new Set(); this.dependents.set(k, set) }
        set.add(id)
      }
    }
    return list
  }

  /** invalidate drops the lists that hold the addresses of nodes with these keys (one came, went or changed). */
  invalidate (keys: Iterable<string>): void {
    for (const k of keys) {
      const ids = this.dependents.get(k)
      if (ids === undefined) continue
      for (const id of ids) this.lists.delete(id)
      this.dependents.delete(k)
    }
  }

  private idOf (rule: CompiledRule): string {
    let id = this.ids.get(rule)
    if (id === undefined) {
      id = [...rule.srcNodeKeys, ...rule.srcCidrs.map(c => c.text)].join(' ')
      this.ids.set(rule, id)
    }
    return id
  }

  private build (rule: CompiledRule, family: 4 | 6 | undefined): SortedSources {
    const byText = new Map<string, Cidr>()
    const add = (c: Cidr): void => { if (family === undefined || c.family === family) byText.set(c.text, c) }
    for (const c of rule.srcCidrs) add(c)
    for (const k of rule.srcNodeKeys) for (const c of this.addrsOf(k)) add(c)
    return sortedSources([...byText.values()])
  }
}

/** sortedSources sorts distinct sources by sortKey and attaches their texts. */
export function sortedSources (cidrs: Cidr[]): SortedSources {
  cidrs.sort((a, b) => a.sortKey < b.sortKey ? -1 : a.sortKey > b.sortKey ? 1 : 0)
  return Object.assign(cidrs, { texts: cidrs.map(c => c.text) })
}
