import { RELAY_MEMBERS_PER_MESSAGE, type Node, type RelayMember, type RelayMembers } from '@warren/protocol'

/** RelayMembersSource is what the feed reads: node records, the mesh, and when either changed. */
export interface RelayMembersSource {
  node: (id: string) => Node | undefined
  nodes: () => Iterable<Node>
  /** isMember: the node may use a relay now (registered, not expired, a member of the mesh) */
  isMember: (id: string) => boolean
  peersOf: (id: string) => ReadonlySet<string>
  /** onChange hears the ids whose record or peers may have changed (all when absent); returns a function that stops it */
  onChange: (listener: (ids?: Iterable<string>) => void) => () => void
}

/**
 * RelayMembersFeed tells standalone TLS relays who may use them and who may talk to
 * whom: a full list when a relay links, then each change at once.
 */
export interface RelayMembersFeed {
  /** subscribe sends the full list to `send` now, then every change; returns a function that stops it */
  subscribe: (send: (msg: RelayMembers) => void) => () => void
  close: () => void
}

/** relayMembersMessages splits a change (or, with `full`, a whole list) into messages the wire takes. */
export function relayMembersMessages (members: RelayMember[], removed: string[], full: boolean): RelayMembers[] {
  const out: RelayMembers[] = []
  for (let i = 0; i === 0 || i < Math.max(members.length, removed.length); i += RELAY_MEMBERS_PER_MESSAGE) {
    out.push({ type: 'relay-members', members: members.slice(i, i + RELAY_MEMBERS_PER_MESSAGE), removed: removed.slice(i, i + RELAY_MEMBERS_PER_MESSAGE) })
  }
  if (full) {
    out[0]!.reset = true
    out[out.length - 1]!.done = true
  }
  return out
}

/**
 * createRelayMembersFeed keeps what it last sent per node, so a change that does not
 * alter a member's entry (a node coming online, new endpoints) sends nothing, and a
 * relay that links later gets the same list the others have. It reads the mesh only
 * while a relay listens.
 */
export function createRelayMembersFeed (source: RelayMembersSource): RelayMembersFeed {
  const subscribers = new Set<(msg: RelayMembers) => void>()
  /** what every subscriber was told, by node id, as JSON to compare */
  const sent = new Map<string, { member: RelayMember, json: string }>()
  let stop: (() => void) | undefined

  function entry (n: Node | undefined): RelayMember | undefined {
    if (n === undefined || !source.isMember(n.id)) return undefined
    return { id: n.id, name: n.name, machineKey: n.machineKey, wgKey: n.wgKey, peers: [...source.peersOf(n.id)].sort() }
  }

  /** refresh works out what changed among `ids` (every node when absent) and tells every subscriber. */
  function refresh (ids?: Iterable<string>): void {
    const check = ids === undefined ? new Set([...sent.keys(), ...[...source.nodes()].map(n => n.id)]) : new Set(ids)
    const members: RelayMember[] = []
    const removed: string[] = []
    for (const id of check) {
      const m = entry(source.node(id))
      if (m === undefined) {
        if (sent.delete(id)) removed.push(id)
        continue
      }
      const json = JSON.stringify(m)
      if (sent.get(id)?.json === json) continue
      sent.set(id, { member: m, json })
      members.push(m)
    }
    if (members.length === 0 && removed.length === 0) return
    for (const msg of relayMembersMessages(members, removed, false)) for (const send of subscribers) send(msg)
  }

  return {
    subscribe (send) {
      if (stop === undefined) {
        stop = source.onChange(refresh)
        refresh()
      }
      subscribers.add(send)
      for (const msg of relayMembersMessages([...sent.values()].map(e => e.member), [], true)) send(msg)
      return () => {
        if (!subscribers.delete(send) || subscribers.size > 0) return
        stop?.()
        stop = undefined
        sent.clear()
      }
    },
    close () {
      stop?.()
      stop = undefined
      subscribers.clear()
      sent.clear()
    }
  }
}
