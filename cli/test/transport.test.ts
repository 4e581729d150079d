import t from 'tap'
import https from 'node:https'
import http from 'node:http'
import net from 'node:net'
import { join } from 'node:path'
import type { AddressInfo } from 'node:net'
import { WebSocketServer } from 'ws'
import { formatCredential, displayFingerprint, type WarrenError } from '@warren/protocol'
import { loadOrCreateTls, type ControllerTls } from '@warren/controller'
import { createControllerTransport, createUnixTransport } from '@warren/sdk'
import { tempDir, rejection, type Scope } from './cli-harness.js'

async function makeCert (tt: Scope): Promise<ControllerTls> {
  return await loadOrCreateTls({ stateDir: tempDir(tt) })
}

interface TestServer { url: string, port: number, hits: string[], upgrades: number, close(): Promise<void> }

/** startServer runs an HTTPS JSON echo server with a WebSocket echo on /ws, counting what reaches it. */
async function startServer (tt: Scope, tls: ControllerTls, host = '127.0.0.1', port = 0): Promise<TestServer> {
  const hits: string[] = []
  const server = https.createServer({ cert: tls.cert, key: tls.key }, (req, res) => {
    hits.push(`${req.method!} ${req.url!}`)
    let body = ''
    req.on('data', c => { body += String(c) })
    req.on('end', () => {
      res.writeHead(req.url === '/missing' ? 404 : 200, { 'content-type': 'application/json' })
      res.end(JSON.stringify(req.url === '/missing'
        ? { error: { code: 'not_found', message: 'no such thing' } }
        : { method: req.method, path: req.url, auth: req.headers.authorization ?? null, body: body === '' ? null : JSON.parse(body) }))
    })
  })
  const wss = new WebSocketServer({ server })
  const state = { upgrades: 0 }
  wss.on('connection', ws => {
    state.upgrades++
    ws.on('message', m => { ws.send(`echo:${String(m)}`) })
  })
  await new Promise<void>(resolve => server.listen(port, host, resolve))
  const p = (server.address() as AddressInfo).port
  const close = async (): Promise<void> => {
    for (const c of wss.clients) c.terminate()
    wss.close()
    server.closeAllConnections()
    await new Promise(resolve => server.close(resolve))
  }
  tt.teardown(close)
  return { url: `https://${host}:${p}`, port: p, hits, get upgrades () { return state.upgrades }, close }
}

t.test('a pinned transport talks JSON to a self-signed controller', async tt => {
  const tls = await makeCert(tt)
  const srv = await startServer(tt, tls)
  const tr = createControllerTransport({ url: srv.url, fingerprint: tls.fingerprint })
  tt.teardown(() => { tr.close() })
  const get = await tr.request<{ method: string, path: string }>('GET', '/v1/ping')
  tt.equal(get.status, 200)
  tt.match(get.body, { method: 'GET', path: '/v1/ping' })
  const post = await tr.request<{ body: unknown, auth: string }>('POST', '/v1/things', { a: 1 }, { authorization: 'Bearer x' })
  tt.same(post.body.body, { a: 1 })
  tt.equal(post.body.auth, 'Bearer x')
  const missing = await tr.request<{ error: { code: string } }>('GET', '/missing')
  tt.equal(missing.status, 404, 'non-2xx answers are returned, not thrown')
  tt.equal(missing.body.error.code, 'not_found')
})

t.test('the pin may be given with colons, in upper case, or as the base32 pin of a key', async tt => {
  const tls = await makeCert(tt)
  const srv = await startServer(tt, tls)
  const base32Pin = formatCredential({ kind: 'api', id: '000000000000', secret: 'a'.repeat(32), fingerprint: tls.fingerprint }).split('-')[3]!
  for (const fp of [displayFingerprint(tls.fingerprint), tls.fingerprint.toUpperCase(), base32Pin]) {
    const tr = createControllerTransport({ url: srv.url.replace('https://', ''), fingerprint: fp })
    tt.equal((await tr.request('GET', '/x')).status, 200, `pin form ${fp.slice(0, 12)}...`)
    tr.close()
  }
})

t.test('a wrong pin is refused before any request reaches the server', async tt => {
  const tls = await makeCert(tt)
  const other = await makeCert(tt)
  const srv = await startServer(tt, tls)
  const tr = createControllerTransport({ url: srv.url, fingerprint: other.fingerprint })
  tt.teardown(() => { tr.close() })
  const e = await rejection(tr.request('POST', '/v1/users', { name: 'mallory' }, { authorization: 'Bearer secret' }))
  tt.equal(e.code, 'fingerprint_mismatch')
  tt.match(e.message, displayFingerprint(tls.fingerprint), 'names the fingerprint it got')
  tt.match(e.message, displayFingerprint(other.fingerprint), 'names the fingerprint it expected')
  tt.match(e.message, /--fingerprint/, 'says how to fix it')
  tt.same(srv.hits, [], 'no request, and so no key, reached the server')

  const ws = tr.webSocket('/ws')
  const wsErr = await new Promise<Error>(resolve => ws.once('error', resolve))
  tt.equal((wsErr as WarrenError).code, 'fingerprint_mismatch', 'a WebSocket is refused the same way')
  tt.equal(srv.upgrades, 0)
})

t.test('a certificate that changes after the pin was checked is refused', async tt => {
  const tls = await makeCert(tt)
  const srv = await startServer(tt, tls)
  const tr = createControllerTransport({ url: srv.url, fingerprint: tls.fingerprint })
  tt.teardown(() => { tr.close() })
  tt.equal((await tr.request('GET', '/first')).status, 200)
  await srv.close()
  const impostor = await startServer(tt, await makeCert(tt), '127.0.0.1', srv.port)
  const e = await rejection(tr.request('GET', '/second'))
  tt.equal(e.code, 'fingerprint_mismatch')
  tt.same(impostor.hits, [])
})

t.test('once pinned, host names do not matter', async tt => {
  const tls = await makeCert(tt)
  // The generated certificate names 127.0.0.1 and localhost, not 127.0.0.2.
  const srv = await startServer(tt, tls, '127.0.0.2')
  const pinned = createControllerTransport({ url: srv.url, fingerprint: tls.fingerprint })
  tt.teardown(() => { pinned.close() })
  tt.equal((await pinned.request('GET', '/x')).status, 200)
})

t.test('without a pin a self-signed controller is not trusted, with a hint', async tt => {
  const tls = await makeCert(tt)
  const srv = await startServer(tt, tls)
  const tr = createControllerTransport({ url: srv.url })
  tt.teardown(() => { tr.close() })
  const e = await rejection(tr.request('GET', '/x'))
  tt.equal(e.code, 'untrusted_certificate')
  tt.match(e.message, /--fingerprint/)
  tt.same(srv.hits, [])
})

t.test('a pinned WebSocket connects and carries messages', async tt => {
  const tls = await makeCert(tt)
  const srv = await startServer(tt, tls)
  const tr = createControllerTransport({ url: srv.url, fingerprint: tls.fingerprint })
  tt.teardown(() => { tr.close() })
  const ws = tr.webSocket('/ws')
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
  const reply = new Promise<string>(resolve => ws.once('message', m => { resolve(String(m)) }))
  ws.send('hi')
  tt.equal(await reply, 'echo:hi')
  ws.close()
})

t.test('unreachable controllers give one clear error', async tt => {
  const probe = net.createServer()
  await new Promise<void>(resolve => probe.listen(0, '127.0.0.1', resolve))
  const port = (probe.address() as AddressInfo).port
  await new Promise(resolve => probe.close(resolve))
  const refused = createControllerTransport({ url: `https://127.0.0.1:${port}`, fingerprint: 'ab'.repeat(32) })
  const e1 = await rejection(refused.request('GET', '/x'))
  tt.equal(e1.code, 'unreachable')
  tt.equal(e1.message, `cannot reach controller at https://127.0.0.1:${port}: connection refused (is it running and listening there?)`)
  const unpinned = createControllerTransport({ url: `https://127.0.0.1:${port}` })
  tt.match((await rejection(unpinned.request('GET', '/x'))).message, /^cannot reach controller at .*connection refused/)

  const unknown = createControllerTransport({ url: 'https://no-such-host.invalid:8443' })
  tt.match((await rejection(unknown.request('GET', '/x'))).message, /^cannot reach controller at https:\/\/no-such-host\.invalid:8443: host name/)

  tt.throws(() => createControllerTransport({ url: 'http://127.0.0.1:1' }), { code: 'bad_url' }, 'plain http is refused')
  tt.throws(() => createControllerTransport({ url: 'https://127.0.0.1:1', fingerprint: 'nope' }), { code: 'bad_fingerprint' })
})

t.test('a controller that never answers times out', async tt => {
  // Accepts TCP and stays silent: the TLS handshake never completes.
  const sockets: net.Socket[] = []
  const silent = net.createServer(s => { sockets.push(s) })
  await new Promise<void>(resolve => silent.listen(0, '127.0.0.1', resolve))
  tt.teardown(() => { sockets.forEach(s => s.destroy()); silent.close() })
  const url = `https://127.0.0.1:${(silent.address() as AddressInfo).port}`
  for (const fingerprint of [undefined, 'ab'.repeat(32)]) {
    const tr = createControllerTransport({ url, timeoutMs: 300, ...(fingerprint !== undefined ? { fingerprint } : {}) })
    const started = Date.now()
    const e = await rejection(tr.request('GET', '/x'))
    tt.equal(e.code, 'timeout', `${fingerprint === undefined ? 'unpinned' : 'pinned'}: ${e.message}`)
    tt.comment(`gave up after ${Date.now() - started} ms`)
  }
})

t.test('the Unix socket transport speaks JSON over HTTP and explains a missing socket', async tt => {
  const dir = tempDir(tt)
  const socketPath = join(dir, 'admin.sock')
  const server = http.createServer((req, res) => {
    res.writeHead(201, { 'content-type': 'application/json' })
    req.resume()
    req.on('end', () => res.end(JSON.stringify({ path: req.url })))
  })
  await new Promise<void>(resolve => server.listen(socketPath, resolve))
  tt.teardown(() => { server.close() })
  const tr = createUnixTransport(socketPath)
  tt.same(await tr.request('POST', '/v1/users', { name: 'a' }), { status: 201, body: { path: '/v1/users' } })
  const gone = createUnixTransport(join(dir, 'nope.sock'), { describe: 'the admin socket' })
  const e = await rejection(gone.request('GET', '/v1/users'))
  tt.equal(e.message, 'cannot reach the admin socket: no such socket (is the controller running with this state dir?)')
})
