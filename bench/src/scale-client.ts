/**
 * scale-client runs many simulated nodes in one process. Each registers through the
 * controller's HTTPS API (signed, with a WireGuard proof) and opens its own map session
 * over a real WebSocket (TLS, signed hello), then keeps its peer set up to date from
 * the full map and the deltas, as the daemon would. The orchestrator asks it to watch
 * for one peer (by WireGuard key when joining, by id when leaving) and collects the
 * times at which each node saw that change.
 */
import { Agent } from 'node:https'
import WebSocket from 'ws'
import { MAP_DOMAIN, PROTOCOL_VERSION, mapSigningPayload, type Node, type Peer } from '@warren/protocol'
import { simKeys, simSign, simRegistration, now, serveRpc, httpJson, openFileLimit, type RpcProgress, type SimKeys, type SimNodeSpec, type ClientStats } from './scale-shared.js'

interface SimNode {
  spec: SimNodeSpec
  keys: SimKeys
  id?: string
  ws?: WebSocket
  /** peer id -> online */
  peers: Map<string, boolean>
  online: number
  gotMap: boolean
  seq: number
}

let url = ''
let ca = ''
let controllerKey = ''
let agent: Agent | undefined
const nodes: SimNode[] = []
const stats: ClientStats = { messages: 0, bytes: 0, problems: [], unexpectedCloses: 0 }
/** watched key (wgKey for joins, id for leaves) -> times at which nodes saw it */
const watches = new Map<string, number[]>()
let closing = false

function problem (s: string): void {
  if (stats.problems.length < 20) stats.problems.push(s)
}

/** pool runs fn over items with at most `width` in flight, reporting `<verb> done/total`. */
async function pool<T> (items: T[], width: number, verb: string, progress: RpcProgress, fn: (x: T) => Promise<void>): Promise<void> {
  let i = 0
  let done = 0
  progress(`${verb} 0/${items.length}`)
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, async () => {
    while (i < items.length) {
      await fn(items[i++]!)
      progress(`${verb} ${++done}/${items.length}`)
    }
  }))
}

async function register (n: SimNode): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await registerOnce(n)
      return
    } catch (err) {
      // A reusable key may register the same machine key again, so a lost answer is retried,
      // on fresh connections in case the old ones are stuck.
      if (attempt >= 3) throw err
      problem(`${n.spec.hostname}: registration retried after: ${(err as Error).message}`)
      agent?.destroy()
      agent = new Agent({ ca, keepAlive: true, maxSockets: 4 })
    }
  }
}

async function registerOnce (n: SimNode): Promise<void> {
  const res = await httpJson('POST', { url, agent: agent! }, '/v1/machine/register', simRegistration(n.keys, controllerKey, n.spec.hostname, n.spec.authKey))
  if (res.status !== 200) throw new Error(`registering ${n.spec.hostname}: ${res.status} ${JSON.stringify(res.json).slice(0, 300)}`)
  n.id = (res.json as { node: Node }).node.id
}

function setPeer (n: SimNode, p: Peer): void {
  const was = n.peers.get(p.id)
  if (was === undefined) {
    const seen = watches.get(p.wgKey)
    if (seen !== undefined) seen.push(now())
  }
  if (was === true) n.online--
  if (p.online) n.online++
  n.peers.set(p.id, p.online)
}

function dropPeer (n: SimNode, id: string): void {
  const was = n.peers.get(id)
  if (was === undefined) return
  if (was) n.online--
  n.peers.delete(id)
  const seen = watches.get(id)
  if (seen !== undefined) seen.push(now())
}

function onMessage (n: SimNode, text: string): void {
  stats.messages++
  stats.bytes += text.length
  const m = JSON.parse(text) as { type: string } & Record<string, any>
  switch (m.type) {
    case 'challenge': {
      const hello = {
        type: 'hello',
        version: PROTOCOL_VERSION,
        machineKey: n.keys.machineKey,
        nonce: m.nonce,
        signature: simSign(n.keys, MAP_DOMAIN, mapSigningPayload(m.nonce, n.keys.machineKey, PROTOCOL_VERSION)),
        endpoints: []
      }
      n.ws!.send(JSON.stringify(hello))
      break
    }
    case 'map':
      n.peers.clear()
      n.online = 0
      for (const p of m.netmap.peers as Peer[]) setPeer(n, p)
      n.seq = m.seq
      n.gotMap = true
      break
    case 'delta':
      if (m.seq !== n.seq + 1) problem(`${n.spec.hostname}: delta seq ${m.seq} after ${n.seq}`)
      n.seq = m.seq
      for (const p of (m.peersChanged ?? []) as Peer[]) setPeer(n, p)
      for (const id of (m.peersRemoved ?? []) as string[]) dropPeer(n, id)
      break
    case 'error':
      problem(`${n.spec.hostname}: ${m.code}: ${m.message}`)
      break
  }
}

async function connect (n: SimNode): Promise<void> {
  const wsUrl = `${url.replace('https:', 'wss:')}/v1/machine/map`
  await new Promise<void>((resolve, reject) => {
    const ws = new WebSocket(wsUrl, { ca, perMessageDeflate: false })
    n.ws = ws
    ws.on('open', () => resolve())
    ws.on('error', err => reject(err))
    ws.on('message', data => onMessage(n, data.toString()))
    ws.on('close', code => {
      if (!closing) { stats.unexpectedCloses++; problem(`${n.spec.hostname}: session closed (${code})`) }
    })
  })
}

const synced = (n: SimNode): boolean => n.gotMap && n.peers.size === n.spec.expectPeers && n.online === n.peers.size

serveRpc(async (req, progress) => {
  switch (req.op) {
    case 'init':
      url = req.url as string
      ca = req.ca as string
      controllerKey = req.controllerKey as string
      agent = new Agent({ ca, keepAlive: true, maxSockets: 4 })
      return { fdLimit: openFileLimit() }
    case 'register': {
      const started = now()
      const batch = (req.nodes as SimNodeSpec[]).map(spec => ({ spec, keys: simKeys(), peers: new Map(), online: 0, gotMap: false, seq: 0 }))
      nodes.push(...batch)
      await pool(batch, 4, 'registered', progress, register)
      return { ms: now() - started }
    }
    case 'connect': {
      await pool(nodes, 32, 'connected', progress, connect)
      return {}
    }
    case 'synced': {
      let ok = 0
      let maps = 0
      const behind: string[] = []
      for (const n of nodes) {
        if (n.gotMap) maps++
        if (synced(n)) ok++
        else if (behind.length < 3) behind.push(`${n.spec.hostname}: ${n.gotMap ? 'map' : 'no map'}, ${n.peers.size}/${n.spec.expectPeers} peers, ${n.online} online`)
      }
      return { synced: ok, maps, total: nodes.length, behind }
    }
    case 'watch':
      watches.set(req.key as string, [])
      return {}
    case 'collect': {
      const times = watches.get(req.key as string) ?? []
      return { times }
    }
    case 'unwatch':
      watches.delete(req.key as string)
      return {}
    case 'stats':
      return { ...stats, peers: nodes.reduce((s, n) => s + n.peers.size, 0) }
    case 'close':
      closing = true
      for (const n of nodes) n.ws?.terminate()
      agent?.destroy()
      return {}
  }
  throw new Error(`unknown request ${req.op}`)
})
