import { WarrenError, HOST_ATTR_KEYS, isCustomAttr, type HostAttrs, type Node, type PostureAttrs, type PostureValue } from '@warren/protocol'
import type { NodeRecord } from '../store.js'
import type { CommitCore, Deferred } from './commit-core.js'
import type { NodeTable } from './node-table.js'

/**
 * NodeAttrMethods keep a node's device posture attributes, stored with the node: the
 * `node:` ones it reports in its map hello (os, OS version, Warren version) and the
 * `custom:` ones admins set. A change is a node change, so the policy engine re-reads
 * what postures the node meets and its peers lose access at once when it stops meeting one.
 */
export interface NodeAttrMethods {
  /** nodeAttrs is `warren admin nodes attrs NODE` */
  nodeAttrs: (idOrName: string) => { node: string, attrs: PostureAttrs }
  /** setNodeAttrs sets and removes custom attributes in one change (keys `custom:NAME`) */
  setNodeAttrs: (idOrName: string, change: { set?: Record<string, PostureValue>, unset?: string[] }, actor: string) => Promise<Node>
  /** reportHostAttrs records the `node:` attributes a node's hello reports (those it leaves out are removed) */
  reportHostAttrs: (id: string, attrs: HostAttrs) => Promise<Node | undefined>
}

const MAX_ATTRS = 64

/** sortedAttrs is attrs in key order, undefined when empty, so equal sets compare and store alike. */
function sortedAttrs (attrs: Record<string, PostureValue>): PostureAttrs | undefined {
  const keys = Object.keys(attrs).sort()
  return keys.length === 0 ? undefined : Object.fromEntries(keys.map(k => [k, attrs[k]!]))
}

function withAttrs (n: NodeRecord, attrs: PostureAttrs | undefined): NodeRecord {
  const next: NodeRecord = { ...n }
  if (attrs === undefined) delete next.postureAttrs
  else next.postureAttrs = attrs
  return next
}

const same = (a: PostureAttrs | undefined, b: PostureAttrs | undefined): boolean => JSON.stringify(a ?? {}) === JSON.stringify(b ?? {})

export function createNodeAttrMethods (core: CommitCore, table: NodeTable): NodeAttrMethods {
  const { store, locked, auditOp } = core
  return {
    nodeAttrs (idOrName) {
      const n = table.require(idOrName)
      return { node: n.name, attrs: { ...n.postureAttrs } }
    },
    setNodeAttrs: locked((idOrName: string, change: { set?: Record<string, PostureValue>, unset?: string[] }, actor: string) => {
      const n = table.require(idOrName)
      const set = change.set ?? {}
      const unset = change.unset ?? []
      for (const key of [...Object.keys(set), ...unset]) {
        if (!isCustomAttr(key)) {
          throw new WarrenError('bad_attr', `attribute "${key}" cannot be set: admins set custom:NAME attributes (letters, digits, _); node: attributes come from the node itself`, { status: 400, field: 'attrs' })
        }
      }
      const both = unset.find(k => Object.hasOwn(set, k))
      if (both !== undefined) throw new WarrenError('bad_attr', `attribute ${both} is both set and unset; do one`, { status: 400, field: 'attrs' })
      const next: Record<string, PostureValue> = { ...n.postureAttrs }
      for (const k of unset) delete next[k]
      for (const [k, v] of Object.entries(set)) next[k] = v
      if (Object.keys(next).length > MAX_ATTRS) throw new WarrenError('too_many_attrs', `a node holds at most ${MAX_ATTRS} attributes; unset some first`, { status: 400, field: 'attrs' })
      const attrs = sortedAttrs(next)
      if (same(attrs, n.postureAttrs)) return core.unchanged(table.view(n))
      return table.save(withAttrs(n, attrs), [auditOp(actor, 'node.attrs', n.name, { node: n.id, set, unset })])
    }),
    reportHostAttrs: locked((id: string, reported: HostAttrs): Deferred<Node | undefined> => {
      const n = store.nodes.get(id)
      if (n === undefined) return core.unchanged(undefined)
      const next: Record<string, PostureValue> = Object.fromEntries(Object.entries(n.postureAttrs ?? {}).filter(([k]) => !k.startsWith('node:')))
      for (const k of HOST_ATTR_KEYS) if (reported[k] !== undefined) next[k] = reported[k]
      const attrs = sortedAttrs(next)
      if (same(attrs, n.postureAttrs)) return core.unchanged(table.view(n))
      return table.save(withAttrs(n, attrs), [auditOp(`node:${n.id}`, 'node.attrs.report', n.name, { node: n.id, attrs: reported })])
    })
  }
}
