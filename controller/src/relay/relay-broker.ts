import type { Node, RelayInfo, RelayGrant, RelayRevoke } from '@warren/protocol'
import { createTokenBuckets, type IpFamily } from '@warren/relay'
import { pairFamily, relayFamilies, nodeFamilies, describeFamilies } from './relay-family.js'

/**
 * RelayBackend is a relay as the broker drives it: the embedded relay directly
 * (embeddedRelayBackend), a standalone one through its control connection. One whose
 * info has no `udp` runs only a TLS relay: maps list it, and it gets no allocation.
 */
export interface RelayBackend {
  info: RelayInfo
  allocate: (req: { nodeKeys: [string, string], expiresAt: number }) => Promise<{ id: string, sides: ReadonlyArray<{ port: number }> }>
  renew: (id: string, expiresAt: number) => boolean
  release: (id: string) => Promise<void>
  /** endpointOf is host:port of an allocated port, as nodes reach it over `family` (its IPv6 endpoint for 6, when it has one) */
  endpointOf: (port: number, family: IpFamily) => string
}

/** MeshView is what the broker reads of the mesh: node records and who may talk to whom. */
export interface MeshView {
  node: (id: string) => Node | undefined
  isMember: (id: string) => boolean
  peersOf: (id: string) => ReadonlySet<string>
}

/** RelayLogger is the slice of a pino logger the broker writes to. */
export interface RelayBrokerLogger {
  info: (obj: object, msg?: string) => void
  warn: (obj: object, msg?: string) => void
}

/** findPeer finds `peer` (a node id or WireGuard key) among the peers the policy gives `nodeId`. */
export function findPeer (mesh: MeshView, nodeId: string, peer: string): Node | undefined {
  const peers = mesh.peersOf(nodeId)
  if (peers.has(peer)) return mesh.node(peer)
  for (const id of peers) {
    const n = mesh.node(id)
    if (n?.wgKey === peer) return n
  }
  return undefined
}

export interface RelayBrokerOptions {
  backends: RelayBackend[]
  mesh: MeshView
  /** send delivers a grant or revocation to a node's map session (false when it has none) */
  send: (nodeId: string, msg: RelayGrant | RelayRevoke) => boolean
  /** how long a grant lasts unless renewed by another request (default 10 min) */
  grantTtlMs?: number
  /** relay requests per node: burst and per second (default 64, 1/s; renewals count too) */
  requestRate?: { burst: number, perSecond: number }
  /** onBackendsChanged is called after a relay was added or removed (to update the maps' NAT config) */
  onBackendsChanged?: () => void
  log?: RelayBrokerLogger
}

/** RelayPair is one granted pair, as the broker keeps it. */
export interface RelayPair {
  /** the two node ids, sorted; side i of the allocation belongs to nodes[i] */
  nodes: [string, string]
  nodeKeys: [string, string]
  relay: RelayBackend
  /** the IP family both nodes bind over (nftables cannot forward between families) */
  family: IpFamily
  allocation: string
  ports: [number, number]
  expiresAt: number
  /** the nodes that asked for it and have not released it since; it is freed when none is left */
  holders: Set<string>
}

/**
 * RelayBroker decides who gets a kernel-relay allocation: only member nodes, only for a
 * pair the policy lets talk (the peer must be in the asker's peer set), at most
 * `requestRate` requests per node, and only until the grant expires. Both nodes of a
 * pair get a grant for their own side. When the policy or a node changes, every pair it
 * touches is checked again, and one that is no longer allowed is released at the relay
 * first (its forwards are gone from the kernel) and then revoked to both nodes. A node
 * holds a pair from its request until its release; once neither node holds it, it is
 * freed the same way (code 'released').
 */
export interface RelayBroker {
  /** request handles a node's relay-request for `peer` (a node id or WireGuard key) */
  request: (nodeId: string, peer: string) => Promise<void>
  /**
   * release handles a node's relay-release for `peer`: the node no longer holds the pair,
   * which is freed at the relay (and revoked to both nodes) when the peer does not hold it
   * either. A release of a pair the node does not hold changes nothing.
   */
  release: (nodeId: string, peer: string) => void
  /** meshChanged re-checks the pairs of these nodes (of every pair when absent) */
  meshChanged: (ids?: Iterable<string>) => void
  pairs: () => RelayPair[]
  backends: () => RelayBackend[]
  /** addBackend adds a relay (a standalone relay that connected); one with the same id is replaced */
  addBackend: (b: RelayBackend) => void
  /** removeBackend drops a relay and revokes every pair on it */
  removeBackend: (b: RelayBackend) => void
  /** idle resolves once the changes started so far (releases, revocations) are done */
  idle: () => Promise<void>
  /** close releases every allocation */
  close: () => Promise<void>
}

const pairKey = (x: string, y: string): string => x < y ? `${x}\n${y}` : `${y}\n${x}`

export function createRelayBroker (opts: RelayBrokerOptions): RelayBroker {
  const { mesh, log } = opts
  const ttl = opts.grantTtlMs ?? 600_000
  const rate = createTokenBuckets(opts.requestRate?.burst ?? 64, opts.requestRate?.perSecond ?? 1)
  const backends: RelayBackend[] = [...opts.backends]
  const pairs = new Map<string, RelayPair>()
  const pending = new Map<string, Promise<RelayPair | undefined>>()
  const timers = new Map<string, NodeJS.Timeout>()
  const work = new Set<Promise<unknown>>()
  let closed = false
  /** udpBackends are the relays that run a kernel UDP relay (a standalone relay may run only a TLS relay) */
  const udpBackends = (): RelayBackend[] => backends.filter(b => b.info.udp !== undefined)

  const track = (p: Promise<unknown>): void => {
    work.add(p)
    void p.finally(() => work.delete(p))
  }

  function refuse (nodeId: string, peer: string, code: string, message: string): void {
    opts.send(nodeId, { type: 'relay-revoke', peer, code, message })
  }

  /** allowed says why a pair may no longer be relayed, or undefined when it may. */
  function disallowed (p: { nodes: [string, string], nodeKeys: [string, string] }): string | undefined {
    for (let i = 0; i < 2; i++) {
      const n = mesh.node(p.nodes[i]!)
      if (n === undefined || !mesh.isMember(n.id)) return 'node_gone'
      if (n.wgKey !== p.nodeKeys[i]) return 'key_changed'
    }
    return mesh.peersOf(p.nodes[0]).has(p.nodes[1]) ? undefined : 'not_allowed'
  }

  function grant (p: RelayPair): void {
    for (let i = 0; i < 2; i++) {
      const other = 1 - i
      opts.send(p.nodes[i]!, {
        type: 'relay-grant',
        peer: p.nodeKeys[other]!,
        peerId: p.nodes[other]!,
        relay: p.relay.info.id,
        relayKey: p.relay.info.key,
        endpoint: p.relay.endpointOf(p.ports[i]!, p.family),
        allocation: p.allocation,
        expires: new Date(p.expiresAt).toISOString()
      })
    }
  }

  function arm (key: string, p: RelayPair): void {
    clearTimeout(timers.get(key))
    const t = setTimeout(() => track(revoke(key, p, 'expired', 'the relay grant expired; request it again')), Math.max(0, p.expiresAt - Date.now()))
    t.unref()
    timers.set(key, t)
  }

  /** revoke releases the allocation at the relay, then tells both nodes. */
  async function revoke (key: string, p: RelayPair, code: string, message: string): Promise<void> {
    if (pairs.get(key) !== p) return
    pairs.delete(key)
    clearTimeout(timers.get(key))
    timers.delete(key)
    try {
      await p.relay.release(p.allocation)
    } catch (err) {
      log?.warn({ err: (err as Error).message, allocation: p.allocation }, 'relay could not release an allocation')
    }
    log?.info({ allocation: p.allocation, nodes: p.nodes, code }, 'relay allocation revoked')
    for (let i = 0; i < 2; i++) opts.send(p.nodes[i]!, { type: 'relay-revoke', peer: p.nodeKeys[1 - i]!, allocation: p.allocation, code, message })
  }

  async function allocate (key: string, nodes: [string, string], nodeKeys: [string, string], asker: string, usable: Array<{ relay: RelayBackend, family: IpFamily }>): Promise<RelayPair | undefined> {
    // The kernel relay with the fewest pairs of ours, of those both nodes reach over one family.
    const load = (b: RelayBackend): number => [...pairs.values()].filter(p => p.relay === b).length
    const { relay, family } = usable.reduce((best, u) => load(u.relay) < load(best.relay) ? u : best)
    const expiresAt = Date.now() + ttl
    const a = await relay.allocate({ nodeKeys, expiresAt })
    const p: RelayPair = { nodes, nodeKeys, relay, family, allocation: a.id, ports: [a.sides[0]!.port, a.sides[1]!.port], expiresAt, holders: new Set([asker]) }
    if (closed || disallowed(p) !== undefined || !backends.includes(relay)) {
      // The policy changed, or the relay went away, while the relay was allocating.
      await relay.release(a.id)
      return undefined
    }
    pairs.set(key, p)
    arm(key, p)
    return p
  }

  async function request (nodeId: string, peer: string): Promise<void> {
    if (closed) return
    if (!rate.take(nodeId)) return refuse(nodeId, peer, 'rate_limited', 'too many relay requests from this node; wait and ask again')
    const self = mesh.node(nodeId)
    if (self === undefined || !mesh.isMember(nodeId)) return refuse(nodeId, peer, 'not_member', 'this node is not an active member of the mesh')
    const other = findPeer(mesh, nodeId, peer)
    if (other === undefined || other.id === nodeId || !mesh.isMember(other.id)) {
      return refuse(nodeId, peer, 'not_allowed', `no peer '${peer}' that the policy lets this node talk to`)
    }
    if (udpBackends().length === 0) return refuse(nodeId, peer, 'no_relay', 'this controller runs no UDP relay')
    const usable = udpBackends().flatMap(relay => {
      const family = pairFamily(relay.info, self, other)
      return family === undefined ? [] : [{ relay, family }]
    })
    if (usable.length === 0) {
      const message = (`no UDP relay both nodes reach over one IP family (a relay cannot forward between IPv4 and IPv6): this node has ${describeFamilies(nodeFamilies(self))}, ` +
        `the peer has ${describeFamilies(nodeFamilies(other))}, the relays serve ${udpBackends().map(b => `${b.info.id}: ${describeFamilies(relayFamilies(b.info))}`).join(', ')}; ` +
        'give a relay an address of the family the nodes share (--relay-host6 or --public-host6 for IPv6)'
      ).slice(0, 1000)
      log?.warn({ nodes: [nodeId, other.id] }, message)
      return refuse(nodeId, peer, 'no_common_family', message)
    }
    const key = pairKey(nodeId, other.id)
    const nodes: [string, string] = nodeId < other.id ? [nodeId, other.id] : [other.id, nodeId]
    const nodeKeys: [string, string] = nodes[0] === nodeId ? [self.wgKey, other.wgKey] : [other.wgKey, self.wgKey]
    const have = pairs.get(key)
    if (have !== undefined) {
      if (disallowed(have) === undefined && have.relay.renew(have.allocation, Date.now() + ttl)) {
        have.expiresAt = Date.now() + ttl
        have.holders.add(nodeId)
        arm(key, have)
        grant(have)
        return
      }
      await revoke(key, have, 'key_changed', 'the pair changed; a new allocation follows')
    }
    let job = pending.get(key)
    if (job === undefined) {
      job = allocate(key, nodes, nodeKeys, nodeId, usable).finally(() => pending.delete(key))
      pending.set(key, job)
    }
    let p: RelayPair | undefined
    try {
      p = await job
    } catch (err) {
      log?.warn({ err: (err as Error).message }, 'relay allocation failed')
      return refuse(nodeId, peer, 'relay_unavailable', `the relay could not allocate: ${(err as Error).message}`)
    }
    if (p === undefined) return refuse(nodeId, peer, 'not_allowed', `no peer '${peer}' that the policy lets this node talk to`)
    // A second asker that joined the first one's allocation holds it too.
    if (pairs.get(key) === p) p.holders.add(nodeId)
    grant(p)
  }

  function release (nodeId: string, peer: string): void {
    if (closed) return
    const other = findPeer(mesh, nodeId, peer)
    if (other === undefined) return
    const key = pairKey(nodeId, other.id)
    const p = pairs.get(key)
    if (p === undefined || !p.holders.delete(nodeId) || p.holders.size > 0) return
    track(revoke(key, p, 'released', 'neither node of the pair holds the relay allocation any more; request it again when needed'))
  }

  return {
    request,
    release,
    meshChanged (ids) {
      const only = ids === undefined ? undefined : new Set(ids)
      for (const [key, p] of pairs) {
        if (only !== undefined && !only.has(p.nodes[0]) && !only.has(p.nodes[1])) continue
        const why = disallowed(p)
        if (why !== undefined) track(revoke(key, p, why, why === 'not_allowed' ? 'the policy no longer lets these nodes talk' : 'a node of the pair left the mesh or changed its key'))
      }
    },
    pairs: () => [...pairs.values()],
    backends: () => [...backends],
    addBackend (b) {
      const old = backends.find(x => x.info.id === b.info.id)
      if (old !== undefined) this.removeBackend(old)
      backends.push(b)
      opts.onBackendsChanged?.()
    },
    removeBackend (b) {
      const i = backends.indexOf(b)
      if (i < 0) return
      backends.splice(i, 1)
      for (const [key, p] of pairs) if (p.relay === b) track(revoke(key, p, 'relay_gone', `relay '${b.info.id}' went away; request a relay again`))
      opts.onBackendsChanged?.()
    },
    idle: async () => { while (work.size > 0) await Promise.allSettled([...work]) },
    async close () {
      closed = true
      for (const t of timers.values()) clearTimeout(t)
      await Promise.allSettled([...pairs.values()].map(async p => await p.relay.release(p.allocation)))
      pairs.clear()
    }
  }
}
