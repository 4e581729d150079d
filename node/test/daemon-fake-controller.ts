import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { WebSocketServer, WebSocket } from 'ws'
import {
  generateWireGuardKeyPair, verifyMessage, verifyWireGuardProof, registerSigningPayload, mapSigningPayload,
  REGISTER_DOMAIN, MAP_DOMAIN, PROTOCOL_VERSION,
  type Node, type Peer, type FilterRule, type RegisterRequest, type MapDelta, type MapHello, type Netmap, type NatConfig
} from '@warren/protocol'
import { sendJson } from '@warren/sdk/transport'

/**
 * FakeController is a small plain-HTTP stand-in for the controller's machine API:
 * registration (checking signatures and proofs like the real one), and the map session
 * with challenge, full map, deltas and resume. Tests script peers and deltas.
 */
export interface FakeController {
  port: number
  nodes: Map<string, Node>
  /** peers every node sees */
  peers: Peer[]
  /** the inbound filter every node gets */
  filter: FilterRule[]
  registrations: RegisterRequest[]
  hellos: MapHello[]
  /** NAT config (STUN servers) every map carries, when set */
  nat?: NatConfig
  /** endpoint lists the nodes sent after their hello (ClientEndpoints) */
  endpointUpdates: string[][]
  sessions: () => number
  delta: (d: Omit<MapDelta, 'type' | 'seq'>) => void
  /** dropAll closes every map session (as a controller crash would) */
  dropAll: () => void
  deleteNode: (machineKey: string) => void
  transport: (init: { url: string }) => { request: any, webSocket: (p: string) => WebSocket, close: () => void }
  close: () => Promise<void>
}

/** until polls a condition every 10 ms and fails with `what` after `ms` (generous, so that a loaded machine only waits longer). */
export async function until (what: string, cond: () => boolean | Promise<boolean>, ms = 60_000): Promise<void> {
  const end = Date.now() + ms
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}

export function fakePeer (n: number): Peer {
  return {
    id: `peer${n}`, name: `peer${n}`, fqdn: `peer${n}.warren.internal`, user: 'alice', tags: n % 2 === 0 ? ['tag:db'] : [],
    wgKey: generateWireGuardKeyPair().publicKey, ipv4: `100.64.1.${n}`, ipv6: `fd7a:115c:a1e0:ab12::1:${n}`, endpoints: [`192.0.2.${n}:41641`], online: true
  }
}

export async function startFakeController (opts: { port?: number } = {}): Promise<FakeController> {
  const ctl = generateWireGuardKeyPair()
  const nodes = new Map<string, Node>()
  const registrations: RegisterRequest[] = []
  const hellos: MapHello[] = []
  const live = new Map<WebSocket, { node: Node, session: string, seq: number }>()
  let sessionCount = 0
  let lastSessions = new Map<string, { session: string, seq: number }>()

  const netmapFor = (n: Node): Netmap => ({ self: n, peers: fc.peers, filter: fc.filter, dns: { domain: 'warren.internal', magicDns: true }, ...(fc.nat !== undefined ? { nat: fc.nat } : {}) })

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', c => chunks.push(c))
    req.on('end', () => {
      const json = (status: number, body: unknown): void => { res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body)) }
      if (req.url?.split('?')[0] === '/v1/machine/key') return json(200, { version: PROTOCOL_VERSION, controllerKey: ctl.publicKey, domain: 'warren.internal' })
      const r = JSON.parse(Buffer.concat(chunks).toString()) as RegisterRequest
      registrations.push(r)
      const { signature, wgProof, ...unsigned } = r
      const payload = registerSigningPayload(unsigned)
      if (!verifyMessage(r.machineKey, REGISTER_DOMAIN, payload, signature) || !verifyWireGuardProof(ctl.privateKey, r.wgKey, REGISTER_DOMAIN, payload, wgProof)) {
        return json(401, { error: { code: 'bad_signature', message: 'registration signature does not verify' } })
      }
      let node = nodes.get(r.machineKey)
      if (r.authKey === undefined) {
        if (node === undefined) return json(404, { error: { code: 'unknown_node', message: 'no node is registered with this machine key; join with an auth key' } })
      } else if (r.authKey.includes('aaaaaaaaaaaa')) {
        return json(401, { error: { code: 'auth_key_expired', message: 'auth key aaaaaaaaaaaa expired at 2026-01-01T00:00:00Z; create a new one with warren admin keys create' } })
      } else {
        node = {
          id: `n${nodes.size + 1}`, name: r.hostname, fqdn: `${r.hostname}.warren.internal`, user: 'alice', tags: r.requestTags ?? [],
          machineKey: r.machineKey, wgKey: r.wgKey, ipv4: `100.64.0.${nodes.size + 1}`, ipv6: `fd7a:115c:a1e0:ab12::${nodes.size + 1}`,
          status: r.authKey.includes('bbbbbbbbbbbb') ? 'pending' : 'active', ephemeral: false, online: false, created: new Date().toISOString(), endpoints: []
        }
        nodes.set(r.machineKey, node)
      }
      json(200, { node })
    })
  })
  const wss = new WebSocketServer({ server })
  wss.on('connection', ws => {
    const nonce = `n${Math.random().toString(36).slice(2)}`
    ws.send(JSON.stringify({ type: 'challenge', version: PROTOCOL_VERSION, nonce }))
    ws.on('message', data => {
      const m = JSON.parse(data.toString())
      if (m.type === 'endpoints') fc.endpointUpdates.push(m.endpoints)
      if (m.type !== 'hello') return
      hellos.push(m)
      const node = nodes.get(m.machineKey)
      if (node === undefined || !verifyMessage(m.machineKey, MAP_DOMAIN, mapSigningPayload(nonce, m.machineKey, m.version), m.signature)) {
        ws.send(JSON.stringify({ type: 'error', code: 'unknown_node', message: 'no node is registered with this machine key (it may have been deleted); join again with an auth key' }))
        ws.close()
        return
      }
      sessionCount++
      const prev = lastSessions.get(node.id)
      if (m.resume !== undefined && prev !== undefined && m.resume.session === prev.session && m.resume.seq === prev.seq) {
        const s = { node, session: prev.session, seq: prev.seq + 1 }
        live.set(ws, s)
        ws.send(JSON.stringify({ type: 'delta', seq: s.seq }))
      } else {
        const s = { node, session: `s${sessionCount}`, seq: 1 }
        live.set(ws, s)
        ws.send(JSON.stringify({ type: 'map', session: s.session, seq: s.seq, netmap: netmapFor(node) }))
      }
      lastSessions.set(node.id, { session: live.get(ws)!.session, seq: live.get(ws)!.seq })
    })
    ws.on('close', () => live.delete(ws))
  })
  await new Promise<void>(resolve => server.listen(opts.port ?? 0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port

  const fc: FakeController = {
    port,
    nodes,
    peers: [],
    filter: [],
    registrations,
    hellos,
    endpointUpdates: [],
    sessions: () => sessionCount,
    delta (d) {
      if (d.peersChanged !== undefined || d.peersRemoved !== undefined) {
        const byId = new Map(fc.peers.map(p => [p.id, p]))
        for (const id of d.peersRemoved ?? []) byId.delete(id)
        for (const p of d.peersChanged ?? []) byId.set(p.id, p)
        fc.peers = [...byId.values()]
      }
      for (const [ws, s] of live) {
        s.seq++
        lastSessions.set(s.node.id, { session: s.session, seq: s.seq })
        ws.send(JSON.stringify({ type: 'delta', seq: s.seq, ...d }))
      }
    },
    dropAll () { for (const ws of live.keys()) ws.terminate() },
    deleteNode (machineKey) {
      const n = nodes.get(machineKey)
      nodes.delete(machineKey)
      for (const [ws, s] of live) {
        if (s.node.id !== n?.id) continue
        ws.send(JSON.stringify({ type: 'error', code: 'node_deleted', message: `node '${s.node.name}' was deleted from the network; join again with an auth key to come back` }))
        ws.close()
      }
    },
    transport: () => ({
      request: async (method: string, path: string, body?: unknown) => await sendJson((o, cb) => http.request(o, cb), { method, host: '127.0.0.1', port: fc.port, path }, body, 'fake controller', 5000),
      webSocket: (p: string) => new WebSocket(new URL(p, `ws://127.0.0.1:${fc.port}/`)),
      close () {}
    }),
    async close () {
      for (const ws of live.keys()) ws.terminate()
      wss.close()
      server.closeAllConnections()
      await new Promise<void>(resolve => server.close(() => resolve()))
    }
  }
  return fc
}
