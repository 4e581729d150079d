import t from 'tap'
import { promises as fs, mkdtempSync, statSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { WarrenError, PROTOCOL_VERSION, type LocalStatus, type LocalUpRequest } from '@warren/protocol'
import { startLocalApi, type LocalBackend } from '../src/localapi/server.js'
import { createUnixTransport } from '@warren/sdk/transport'
import { createDaemonMetrics } from '../src/daemon/metrics.js'

const status: LocalStatus = { version: PROTOCOL_VERSION, backendState: 'NeedsLogin', health: [], interfaceName: 'wg0', peers: [] }

function backend (over: Partial<LocalBackend> = {}): LocalBackend & { ups: LocalUpRequest[] } {
  const ups: LocalUpRequest[] = []
  return {
    ups,
    status: async () => status,
    peers: () => ({ backendState: 'Running', peers: [{ id: 'n1', name: 'db', fqdn: 'db.warren.internal', tags: ['tag:db'], ipv4: '100.64.0.2', ipv6: 'fd7a::2', wgKey: Buffer.alloc(32, 2).toString('base64'), online: true }] }),
    up: async r => { ups.push(r); return { ...status, backendState: 'Starting' } },
    down: async () => ({ ...status, backendState: 'Stopped' }),
    ip: (peer, family) => ({ name: peer ?? 'self', addresses: family === 6 ? ['fd7a::1'] : ['100.64.0.1'] }),
    ping: async () => { throw new WarrenError('ping_failed', 'no reply from db (100.64.0.2) over the mesh', { status: 504 }) },
    netcheck: async () => ({ udp: true, mappings: ['198.51.100.1:41641'], endpointIndependent: true, wgPort: 41641, servers: [], checkedAt: new Date(0).toISOString() }),
    whois: ip => ({ node: { id: 'n1', name: 'db', fqdn: 'db.warren.internal', ipv4: ip, ipv6: 'fd7a::2', tags: [] }, user: 'alice', tags: [], self: false }),
    ...over
  }
}

async function serve (t: { teardown(fn: () => Promise<void>): void }, b: LocalBackend) {
  const dir = mkdtempSync(join(tmpdir(), 'localapi-'))
  const socketPath = join(dir, 'run', 'warrend.sock')
  const api = await startLocalApi({ socketPath, daemon: b, metrics: createDaemonMetrics() })
  t.teardown(async () => { await api.close(); await fs.rm(dir, { recursive: true, force: true }) })
  return { socketPath, api, client: createUnixTransport(socketPath) }
}

t.test('routes answer JSON checked against the wire schemas', async t => {
  const b = backend()
  const { client, socketPath } = await serve(t, b)
  t.equal(statSync(socketPath).mode & 0o777, 0o600, 'the socket is owner-only')
  t.same((await client.request('GET', '/v1/status')).body, status)
  t.same((await client.request('GET', '/v1/peers')).body, b.peers(), 'peers: the map\'s view')
  const up = await client.request('POST', '/v1/up', { controller: 'https://c:1', authKey: 'k', advertiseTags: ['tag:x'] })
  t.equal(up.status, 200)
  t.same(b.ups, [{ controller: 'https://c:1', authKey: 'k', advertiseTags: ['tag:x'] }])
  t.equal((await client.request<LocalStatus>('POST', '/v1/down')).body.backendState, 'Stopped')
  t.same((await client.request('GET', '/v1/ip?peer=db&family=6')).body, { name: 'db', addresses: ['fd7a::1'] })
  t.same((await client.request<{ node: { name: string } }>('GET', '/v1/whois?ip=100.64.0.2')).body.node.name, 'db')
  const m = await client.request<string>('GET', '/metrics')
  t.equal(m.status, 200)
})

t.test('bad requests get a clear error naming the field, and reach nothing', async t => {
  const b = backend()
  const { client } = await serve(t, b)
  const cases: Array<[string, string, unknown, number, string, RegExp]> = [
    ['POST', '/v1/up', { authKey: 'k' }, 400, 'invalid_input', /controller.*required/],
    ['POST', '/v1/up', { controller: 'x', color: 'red' }, 400, 'invalid_input', /color.*not a known field/],
    ['POST', '/v1/up', { controller: 'x', advertiseTags: ['web'] }, 400, 'invalid_input', /advertiseTags\/0/],
    ['POST', '/v1/ping', { peer: 7 }, 400, 'invalid_input', /peer/],
    ['GET', '/v1/ip?family=5', undefined, 400, 'invalid_input', /family '5' must be 4 or 6/],
    ['GET', '/v1/whois', undefined, 400, 'invalid_input', /'ip' is required/],
    ['GET', '/v1/up', undefined, 405, 'method_not_allowed', /takes POST/],
    ['GET', '/v1/nope', undefined, 404, 'not_found', /no LocalAPI route/]
  ]
  for (const [method, path, body, code, errCode, msg] of cases) {
    const r = await client.request<{ error: { code: string, message: string } }>(method, path, body)
    t.equal(r.status, code, `${method} ${path} -> ${code}`)
    t.equal(r.body.error.code, errCode)
    t.match(r.body.error.message, msg)
  }
  t.equal(b.ups.length, 0, 'no invalid up reached the daemon')
})

t.test('malformed JSON and oversize bodies are refused', async t => {
  const { socketPath } = await serve(t, backend())
  const raw = async (body: string): Promise<string> => await new Promise(resolve => {
    const s = net.connect(socketPath, () => s.end(`POST /v1/up HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`))
    let out = ''
    s.on('data', d => { out += d.toString() })
    s.on('close', () => resolve(out))
    s.on('error', () => resolve(out))
  })
  t.match(await raw('{"controller":'), /400 Bad Request[\s\S]*invalid_json/)
  t.match(await raw(JSON.stringify({ controller: 'x'.repeat(70_000) })), /413[\s\S]*body_too_large/)
})

t.test('daemon errors travel as {error: {code, message}} with their status', async t => {
  const { client } = await serve(t, backend())
  const r = await client.request<{ error: { code: string, message: string } }>('POST', '/v1/ping', { peer: 'db' })
  t.equal(r.status, 504)
  t.same(r.body, { error: { code: 'ping_failed', message: 'no reply from db (100.64.0.2) over the mesh' } })
})

t.test('an answer that breaks the schema is not sent', async t => {
  const { client } = await serve(t, backend({ status: async () => ({ ...status, backendState: 'Confused' as 'Running' }) }))
  const r = await client.request<{ error: { code: string } }>('GET', '/v1/status')
  t.equal(r.status, 500)
  t.equal(r.body.error.code, 'internal')
})

t.test('a stale socket is replaced, a live one is refused', async t => {
  const { socketPath } = await serve(t, backend())
  await t.rejects(startLocalApi({ socketPath, daemon: backend() }), { code: 'socket_in_use', message: /--socket/ })
  const dir = mkdtempSync(join(tmpdir(), 'localapi-'))
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }))
  const stale = join(dir, 'stale.sock')
  const srv = net.createServer().listen(stale)
  await new Promise(resolve => srv.once('listening', resolve))
  // Closing a listener in-process removes its file; copy the situation a killed daemon leaves.
  srv.close()
  await fs.writeFile(stale, '')
  const api = await startLocalApi({ socketPath: stale, daemon: backend() })
  t.teardown(() => api.close())
  t.equal((await createUnixTransport(stale).request('GET', '/v1/status')).status, 200)
})
