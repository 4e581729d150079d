import t, { type Test } from 'tap'
import { createServer as createHttpServer, get as httpGet, type Server as HttpServer } from 'node:http'
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { LocalStatus, LocalPeerStatus, Node } from '@warren/protocol'
import { connect, type Warren } from '../src/index.js'

/**
 * The SDK's mesh view against a stand-in daemon: a LocalAPI on a Unix socket whose map
 * puts this node at 127.0.0.3 and its peers on other loopback addresses, so dialing and
 * listening use real sockets.
 */

const SELF: Node = {
  id: 'n-self', name: 'app', fqdn: 'app.warren.internal', tags: [], user: 'alice', machineKey: Buffer.alloc(32, 1).toString('base64'), wgKey: Buffer.alloc(32, 2).toString('base64'),
  ipv4: '127.0.0.3', ipv6: '::1', status: 'active', ephemeral: false, online: true, created: new Date(0).toISOString(), endpoints: []
}
const peer = (id: string, name: string, ipv4: string, online = true, tags: string[] = []): LocalPeerStatus => ({
  id, name, fqdn: `${name}.warren.internal`, tags, ipv4, ipv6: `fd7a:115c:a1e0::${id.slice(-1)}`, wgKey: Buffer.alloc(32, id.charCodeAt(id.length - 1)).toString('base64'), online, rxBytes: 0, txBytes: 0
})
const DB = peer('n-db1', 'db', '127.0.0.2', true, ['tag:db'])
const OLD = peer('n-old2', 'old', '127.0.0.4', false)
/** DB_CAPS are what the stand-in's map gives db on this node (an older daemon's answer, for the others, has none) */
const DB_CAPS = { 'example.com/cap/db': [{ role: 'reader' }, { role: 'writer' }] }

/** FakeDaemon is the stand-in's state: tests change `peers` and read how often status and the peer list were asked. */
interface FakeDaemon { socket: string, state: LocalStatus['backendState'], peers: LocalPeerStatus[], statusCalls: number, peerListCalls: number }

async function fakeDaemon (t: Test): Promise<FakeDaemon> {
  const dir = mkdtempSync(join(tmpdir(), 'warren-sdk-'))
  const d: FakeDaemon = { socket: join(dir, 'd.sock'), state: 'Running', peers: [DB, OLD], statusCalls: 0, peerListCalls: 0 }
  const server: HttpServer = createHttpServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://local')
    const json = (status: number, body: unknown): void => { res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body)) }
    const all = [SELF, ...d.peers]
    if (url.pathname === '/v1/status') {
      d.statusCalls++
      const running = d.state === 'Running'
      json(200, { version: 1, backendState: d.state, health: running ? [] : ['not logged in'], interfaceName: 'warren0', ...(running ? { self: SELF } : {}), peers: running ? d.peers : [] })
    } else if (url.pathname === '/v1/peers') {
      d.peerListCalls++
      const running = d.state === 'Running'
      json(200, { backendState: d.state, ...(running ? { self: SELF } : {}), peers: running ? d.peers.map(({ rxBytes, txBytes, ...p }) => p) : [] })
    } else if (url.pathname === '/v1/ip') {
      json(200, { name: SELF.name, addresses: [SELF.ipv4, SELF.ipv6] })
    } else if (url.pathname === '/v1/whois') {
      const ip = url.searchParams.get('ip')
      const n = all.find(x => x.ipv4 === ip || x.ipv6 === ip)
      if (n === undefined) { json(404, { error: { code: 'unknown_peer', message: `'${ip ?? ''}' is not a peer` } }); return }
      json(200, { node: { id: n.id, name: n.name, fqdn: n.fqdn, ipv4: n.ipv4, ipv6: n.ipv6, tags: n.tags }, ...(n.user !== undefined ? { user: n.user } : {}), tags: n.tags, self: n === SELF, ...(n === DB ? { capabilities: DB_CAPS } : {}) })
    } else if (url.pathname === '/v1/watch') {
      res.writeHead(200, { 'content-type': 'application/x-ndjson' })
      res.write(JSON.stringify({ type: 'snapshot', time: 'T0', backendState: 'Running', peers: [DB, OLD] }) + '\n')
      setTimeout(() => res.write(JSON.stringify({ type: 'peer-up', time: 'T1', peer: { ...OLD, online: true } }) + '\n'), 20)
    } else json(404, { error: { code: 'not_found', message: 'no such route' } })
  })
  await new Promise<void>(resolve => server.listen(d.socket, resolve))
  t.teardown(async () => { await new Promise(resolve => server.close(resolve)); rmSync(dir, { recursive: true, force: true }) })
  return d
}

/** listenOn serves TCP on address:0 and returns the port; each connection gets `hello`. */
async function listenOn (t: Test, address: string): Promise<number> {
  const s: Server = createServer(sock => sock.end('hello'))
  await new Promise<void>(resolve => s.listen(0, address, resolve))
  t.teardown(() => { s.close() })
  return (s.address() as { port: number }).port
}

/** read collects what the far end sends until it ends the connection. */
const read = async (s: Socket): Promise<string> => await new Promise(resolve => { let b = ''; s.on('data', d => { b += String(d) }); s.on('end', () => resolve(b)) })

async function open (t: Test, d: FakeDaemon): Promise<Warren> {
  const w = await connect({ socket: d.socket, timeoutMs: 5000 })
  t.teardown(async () => { await w.close() })
  return w
}

t.test('names resolve as MagicDNS knows them; unknown and hidden ones are ENOPEER', async t => {
  const w = await open(t, await fakeDaemon(t))
  t.same((await w.peers()).map(p => [p.name, p.self, p.online]), [['app', true, true], ['db', false, true], ['old', false, false]])
  for (const name of ['db', 'db.warren.internal', 'db.warren.internal.', '127.0.0.2']) t.equal((await w.resolve(name)).id, 'n-db1', name)
  await t.rejects(w.resolve('nosuch'), { name: 'WarrenError', code: 'ENOPEER', message: /no node 'nosuch'.*policy/ })
})

t.test('dial connects by name, and says why it cannot', async t => {
  const w = await open(t, await fakeDaemon(t))
  const port = await listenOn(t, '127.0.0.2')
  t.equal(await read(await w.dial(`db:${port}`)), 'hello')
  t.equal(await read(await w.dial(`db.warren.internal:${port}`)), 'hello')
  t.equal(await read(await w.dial(`127.0.0.2:${port}`)), 'hello')
  await t.rejects(w.dial('nosuch:80'), { code: 'ENOPEER' })
  await t.rejects(w.dial('old:80'), { code: 'EPEEROFFLINE', message: /'old' is offline/ })
  // A port of db's with no listener: the flow is allowed, nobody answers.
  const closed = await listenOn(t, '127.0.0.2')
  const gone = createServer()
  await new Promise<void>(resolve => gone.listen(0, '127.0.0.2', resolve))
  const free = (gone.address() as { port: number }).port
  await new Promise(resolve => gone.close(resolve))
  t.ok(closed > 0)
  await t.rejects(w.dial(`db:${free}`), { code: 'ECONNREFUSED', message: /nothing listens on 127\.0\.0\.2:\d+/ })
  await t.rejects(w.dial('db'), { code: 'bad_host_port' })
  const ac = new AbortController()
  ac.abort(new Error('stop'))
  await t.rejects(w.dial(`db:${port}`, { signal: ac.signal }), /stop/)
})

t.test('dials in a row reuse the peer list for a moment; a node that appears, returns or goes is seen as the daemon says', async t => {
  const d = await fakeDaemon(t)
  const w = await open(t, d)
  const port = await listenOn(t, '127.0.0.2')
  const [statusBefore, listsBefore] = [d.statusCalls, d.peerListCalls]
  const together = await Promise.all(Array.from({ length: 5 }, async () => await w.dial(`db:${port}`)))
  for (let i = 0; i < 5; i++) t.equal(await read(await w.dial(`db:${port}`)), 'hello')
  for (const s of together) t.equal(await read(s), 'hello')
  // Ten dials ask for the peer list once (twice if a second passed), and never for status, which reads WireGuard's counters.
  t.ok(d.peerListCalls - listsBefore <= 2, `10 dials asked the daemon for its peers ${d.peerListCalls - listsBefore} times`)
  t.equal(d.statusCalls, statusBefore, 'dials ask for no status')
  const copy = await w.resolve('db')
  copy.addresses.length = 0
  t.same((await w.resolve('db')).addresses, [DB.ipv4, DB.ipv6], 'changing a resolved peer does not change the next answer')

  // A node that appeared since the list was asked for, and one that came back online, are dialed at once.
  const newPort = await listenOn(t, '127.0.0.5')
  const oldPort = await listenOn(t, '127.0.0.4')
  d.peers = [DB, { ...OLD, online: true }, peer('n-new5', 'new', '127.0.0.5')]
  t.equal(await read(await w.dial(`new:${newPort}`)), 'hello')
  t.equal(await read(await w.dial(`old:${oldPort}`)), 'hello')
  // A node that left is ENOPEER once the reused list is a second old.
  d.peers = [DB]
  const started = Date.now()
  let gone: unknown
  while (gone === undefined && Date.now() - started < 10_000) {
    gone = await w.resolve('old').then(() => undefined, (e: unknown) => e)
    if (gone === undefined) await new Promise(resolve => setTimeout(resolve, 50))
  }
  t.match(gone, { code: 'ENOPEER' })
  t.ok(Date.now() - started <= 3000, `seen gone after ${Date.now() - started} ms`)
})

t.test('fetch and an http.Agent reach peers by name', async t => {
  const w = await open(t, await fakeDaemon(t))
  const http = createHttpServer((req, res) => res.end(`db says ${req.url ?? ''}`))
  await new Promise<void>(resolve => http.listen(0, '127.0.0.2', resolve))
  t.teardown(() => { http.closeAllConnections(); http.close() })
  const port = (http.address() as { port: number }).port
  const res = await w.fetch(`http://db:${port}/health`)
  t.equal(res.status, 200)
  t.equal(await res.text(), 'db says /health')
  const body = await new Promise<string>((resolve, reject) => {
    httpGet({ host: 'db', port, path: '/agent', agent: w.httpAgent() }, r => { let b = ''; r.on('data', d => { b += String(d) }); r.on('end', () => resolve(b)) }).on('error', reject)
  })
  t.equal(body, 'db says /agent')
  await t.rejects(new Promise((resolve, reject) => { httpGet({ host: 'nosuch', port, agent: w.httpAgent() }, resolve).on('error', reject) }), { code: 'ENOPEER' })
  // createConnection returns a socket at once; what is written before the name resolves waits.
  const sock = w.createConnection({ host: 'db', port })
  sock.write(`GET /early HTTP/1.0\r\nHost: db\r\n\r\n`)
  const early = await new Promise<string>(resolve => { let b = ''; sock.on('data', d => { b += String(d) }); sock.on('end', () => resolve(b)) })
  t.match(early, /db says \/early$/)
  await t.rejects(w.fetch('http://nosuch/'), { name: 'WarrenError', code: 'ENOPEER' }, 'fetch throws the mesh\'s error, not a bare \'fetch failed\'')
})

t.test('listen serves on the mesh addresses only and tells each caller\'s identity; whois refuses what did not come through the mesh', async t => {
  const d = await fakeDaemon(t)
  const w = await open(t, d)
  const http = createHttpServer((req, res) => { w.whois(req.socket).then(who => res.end(`hi ${who.node.name}`), (e: Error) => res.end(String(e))) })
  const srv = await w.listen(0, http)
  const statusCalls = d.statusCalls
  t.ok(srv.addresses.length > 0)
  t.match(srv.addresses[0], /^127\.0\.0\.3:\d+$/)
  const port = Number(srv.addresses[0]!.split(':')[1])
  const callers: string[] = []
  srv.on('connection', (_s, peer) => callers.push(`${peer.node.name} ${peer.user ?? '-'} ${peer.tags.join(',')}`))
  // From db's address: the mesh vouches for it.
  const fromDb = await new Promise<string>((resolve, reject) => {
    httpGet({ host: '127.0.0.3', port, localAddress: '127.0.0.2', path: '/' }, r => { let b = ''; r.on('data', d => { b += String(d) }); r.on('end', () => resolve(b)) }).on('error', reject)
  })
  t.equal(fromDb, 'hi db')
  t.same(callers, ['db - tag:db'])
  // From this node's own address (a local process): closed, never handed on.
  const local = await new Promise<string>(resolve => {
    const s = netConnect({ host: '127.0.0.3', port, localAddress: '127.0.0.3' })
    let answer = ''
    s.on('data', d => { answer += String(d) })
    s.on('error', () => {})
    s.on('close', () => resolve(answer))
    s.write('GET / HTTP/1.0\r\n\r\n')
  })
  t.equal(local, '', 'closed without an answer')
  t.same(callers, ['db - tag:db'], 'no identity for a local caller')
  t.equal(d.statusCalls, statusCalls, 'callers are checked against the map alone: no status call (which reads WireGuard\'s counters)')
  // whois of a socket that arrived elsewhere (not at a mesh address) is ENOPEER.
  const other = createServer(sock => {
    w.whois(sock).then(() => sock.end('who?'), (e: { code: string }) => sock.end(e.code))
  })
  await new Promise<void>(resolve => other.listen(0, '127.0.0.9', resolve))
  t.teardown(() => { other.close() })
  const answer = await new Promise<string>(resolve => {
    const s = netConnect({ host: '127.0.0.9', port: (other.address() as { port: number }).port, localAddress: '127.0.0.2' })
    let b = ''
    s.on('data', d => { b += String(d) })
    s.on('end', () => resolve(b))
  })
  t.equal(answer, 'ENOPEER')
  t.same((await w.whois('127.0.0.2')).node.name, 'db')
  t.same((await w.whois('127.0.0.2')).capabilities, DB_CAPS, 'whois carries the capabilities the policy gives the caller here')
  t.same((await w.whois('127.0.0.4')).capabilities, {}, 'none from a daemon that sends none')
  await t.rejects(w.whois('10.9.9.9'), { code: 'ENOPEER' })
  await srv.close()
})

t.test('without a server, a verified caller\'s socket reads like any net.Server socket, and close() cuts connections still open', async t => {
  const w = await connect({ socket: (await fakeDaemon(t)).socket, timeoutMs: 5000 })
  const srv = await w.listen(0)
  const port = Number(srv.addresses[0]!.split(':')[1])
  // The app answers each line; one listener is attached at once, the other a moment later.
  srv.on('connection', (sock, peer) => {
    const answer = (): void => { sock.on('data', d => sock.write(`${peer.node.name} got ${String(d)}`)) }
    if (sock.remotePort! % 2 === 0) answer()
    else setTimeout(answer, 20)
  })
  const callers: Socket[] = []
  for (let i = 0; i < 2; i++) {
    const s = netConnect({ host: '127.0.0.3', port, localAddress: '127.0.0.2' })
    callers.push(s)
    s.write('ping')
    const got = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the listener never read what the caller sent')), 5000)
      s.once('data', d => { clearTimeout(timer); resolve(String(d)) })
    })
    t.equal(got, 'db got ping', `caller ${i + 1} is answered`)
  }
  // Both callers keep their connections open: close() must not wait for them.
  const ended = callers.map(async s => await new Promise(resolve => s.once('close', resolve)))
  await w.close()
  await Promise.all(ended)
  t.ok(callers.every(s => s.destroyed), 'the open connections were cut')
})

t.test('connect waits for the map, and says when no daemon answers', async t => {
  const d = await fakeDaemon(t)
  d.state = 'Starting'
  setTimeout(() => { d.state = 'Running' }, 300)
  const w = await connect({ socket: d.socket, timeoutMs: 10_000 })
  t.equal((await w.status()).backendState, 'Running')
  await w.close()
  d.state = 'NeedsLogin'
  await t.rejects(connect({ socket: d.socket, timeoutMs: 300 }), { code: 'EDAEMON', message: /NeedsLogin.*warren up/ })
  await t.rejects(connect({ socket: join(tmpdir(), 'no-such-warren.sock') }), { code: 'EDAEMON', message: /no Warren daemon/ })
})

t.test('watch yields the mesh\'s changes as peers, until aborted', async t => {
  const w = await open(t, await fakeDaemon(t))
  const ac = new AbortController()
  const got: string[] = []
  for await (const e of w.watch({ signal: ac.signal })) {
    got.push(`${e.type} ${e.state ?? ''} ${(e.peers ?? []).map(p => p.name).join(',')}${e.peer !== undefined ? `${e.peer.name}:${String(e.peer.online)}` : ''}`)
    if (e.type === 'peer-up') ac.abort()
  }
  t.same(got, ['snapshot Running db,old', 'peer-up  old:true'])
})
