import type { RelayMember, RelayMembers } from '@warren/protocol'
import type { TlsRelayMembers, TlsRelayNode } from './tls-relay.js'

/**
 * MirroredMembers are a standalone TLS relay's members as the controller last said over
 * the relay link. There is no registry on the relay host: a node is a member only while
 * the controller lists it, and may talk only to the peers listed with it.
 */
export interface MirroredMembers extends TlsRelayMembers {
  /**
   * apply takes one relay-members message and returns the ids whose record or peers it
   * changed (undefined, meaning all, when it ends a full list), for TlsRelay.meshChanged
   */
  apply: (msg: RelayMembers) => Iterable<string> | undefined
  /** clear forgets every member (the link to the controller is down: fail closed) */
  clear: () => void
  size: () => number
}

interface Entry { node: TlsRelayNode, machineKey: string, peers: ReadonlySet<string> }

/** createRelayMembers makes an empty mirror: nobody may use the relay until the controller says so. */
export function createRelayMembers (): MirroredMembers {
  const byId = new Map<string, Entry>()
  const byMachineKey = new Map<string, Entry>()
  /** members a full list in progress has not listed yet: dropped when it is done */
  let unlisted: Set<string> | undefined

  function remove (id: string): void {
    const e = byId.get(id)
    if (e === undefined) return
    byId.delete(id)
    if (byMachineKey.get(e.machineKey) === e) byMachineKey.delete(e.machineKey)
    unlisted?.delete(id)
  }

  function put (m: RelayMember): void {
    remove(m.id)
    const e: Entry = { node: { id: m.id, name: m.name, wgKey: m.wgKey }, machineKey: m.machineKey, peers: new Set(m.peers) }
    byId.set(m.id, e)
    byMachineKey.set(m.machineKey, e)
  }

  return {
    byMachineKey: k => byMachineKey.get(k)?.node,
    node: id => byId.get(id)?.node,
    isMember: id => byId.has(id),
    peersOf: id => byId.get(id)?.peers ?? new Set(),
    apply (msg) {
      if (msg.reset === true) unlisted = new Set(byId.keys())
      for (const id of msg.removed) remove(id)
      for (const m of msg.members) put(m)
      if (msg.done !== true || unlisted === undefined) return [...msg.removed, ...msg.members.map(m => m.id)]
      for (const id of unlisted) remove(id)
      unlisted = undefined
      return undefined
    },
    clear () {
      byId.clear()
      byMachineKey.clear()
      unlisted = undefined
    },
    size: () => byId.size
  }
}
