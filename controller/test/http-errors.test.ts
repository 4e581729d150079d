import t, { type Test } from 'tap'
import { connect as netConnect, type Socket } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import type { FastifyInstance } from 'fastify'
import { startController } from '../src/server.js'
import { MAX_JSON_DEPTH } from '../src/app.js'
import { testController, tempDir, call, type TestController } from './helpers.js'

interface RawAnswer { status: number, headers: string, body: any }

/**
 * exchange writes `text` on a fresh connection and reads until the server closes it
 * (every answer tested here closes the connection), then parses the HTTP response.
 */
async function exchange (open: () => Socket, text: string | Buffer): Promise<RawAnswer> {
  const raw = await new Promise<string>((resolve, reject) => {
    const socket = open()
    const chunks: Buffer[] = []
    socket.on('data', (c: Buffer) => chunks.push(c))
    socket.on('error', reject)
    socket.on('close', () => { resolve(Buffer.concat(chunks).toString('utf8')) })
    socket.write(text)
  })
  const m = /^HTTP\/1\.1 (\d{3}) [^\r]*\r\n([\s\S]*?)\r\n\r\n([\s\S]*)$/.exec(raw)
  if (m === null) throw new Error(`not an HTTP response: ${JSON.stringify(raw.slice(0, 200))}`)
  return { status: Number(m[1]), headers: m[2]!, body: m[3] === '' ? '' : JSON.parse(m[3]!) }
}

/** listening starts the app on a free loopback port and returns a connect function for raw sockets. */
async function listening (app: FastifyInstance): Promise<() => Socket> {
  await app.listen({ host: '127.0.0.1', port: 0 })
  const address = app.server.address()
  if (typeof address !== 'object' || address === null) throw new Error('no port')
  return () => netConnect(address.port, '127.0.0.1')
}

function assertErrorShape (t: Test, a: RawAnswer, status: number, code: string, name: string): void {
  t.equal(a.status, status, `${name}: status`)
  t.match(a.headers, /content-type: application\/json/i, `${name}: JSON`)
  t.match(a.body, { error: { code, message: String } }, `${name}: {error: {code, message}}`)
}

t.test('fastify\'s own errors have the API error shape', async t => {
  const tc = await testController(t)
  for (const app of [tc.app, tc.admin]) {
    const badUrl = await call(app, 'GET', '/v1/users/%E0%A4%A')
    t.equal(badUrl.status, 400)
    t.match(badUrl.body, { error: { code: 'bad_url', message: /not valid/ } })
    const longSegment = await call(app, 'GET', `/v1/nodes/${'a'.repeat(200)}`)
    t.equal(longSegment.status, 414)
    t.match(longSegment.body, { error: { code: 'url_too_long', message: /longer than 100 characters/ } })
  }
})

t.test('errors node\'s HTTP server answers itself have the API error shape', async t => {
  const tc: TestController = await testController(t)
  const open = await listening(tc.app)
  const get = (path: string, headers = 'Host: x\r\n'): string => `GET ${path} HTTP/1.1\r\n${headers}Connection: close\r\n\r\n`

  assertErrorShape(t, await exchange(open, get('/v1/users/%E0%A4%A')), 400, 'bad_url', 'bad URL encoding')
  assertErrorShape(t, await exchange(open, get(`/v1/nodes/${'n'.repeat(150)}`)), 414, 'url_too_long', 'long path segment')
  assertErrorShape(t, await exchange(open, get(`/v1/${'a'.repeat(20_000)}`)), 431, 'headers_too_large', 'URL longer than the header limit')
  assertErrorShape(t, await exchange(open, get('/v1/machine/key', `Host: x\r\nX-Big: ${'b'.repeat(20_000)}\r\n`)), 431, 'headers_too_large', 'headers too large')
  assertErrorShape(t, await exchange(open, 'HELLO / HTTP/1.1\r\n\r\n'), 400, 'bad_http', 'unknown method')
  assertErrorShape(t, await exchange(open, 'not http at all\r\n\r\n'), 400, 'bad_http', 'garbage')
  assertErrorShape(t, await exchange(open, 'POST /v1/machine/register HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'), 400, 'bad_http', 'Content-Length with chunked')
  assertErrorShape(t, await exchange(open, get('/v1/machine/key', '')), 400, 'bad_http', 'HTTP/1.1 without Host')
  assertErrorShape(t, await exchange(open, get('/v1/machine/key', 'Host: x\r\nExpect: tea\r\n')), 417, 'expectation_failed', 'unknown Expect')
  assertErrorShape(t, await exchange(open, 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n'), 405, 'method_not_allowed', 'CONNECT')
  const ok = await exchange(open, get('/v1/machine/key'))
  t.equal(ok.status, 200, 'a good request on the same server still works')
})

t.test('a request that is not received in time gets a 408 in the API error shape', async t => {
  const tc = await testController(t)
  // Short limits, checked often, so the timeout fires within the test (node's defaults are 60 s, checked every 30 s).
  const server = tc.app.server as typeof tc.app.server & { connectionsCheckingInterval: number }
  server.headersTimeout = 200
  server.requestTimeout = 300
  server.connectionsCheckingInterval = 50
  const open = await listening(tc.app)
  assertErrorShape(t, await exchange(open, 'GET /v1/machine/key HTTP/1.1\r\nHost: x\r\n'), 408, 'request_timeout', 'headers never finished')
})

t.test('the TLS server answers malformed HTTP in the API error shape too', async t => {
  const c = await startController({ stateDir: await tempDir(t), listen: '127.0.0.1:0', logger: false })
  t.teardown(c.close)
  const { port } = new URL(c.url)
  const open = (): Socket => tlsConnect({ host: '127.0.0.1', port: Number(port), rejectUnauthorized: false })
  assertErrorShape(t, await exchange(open, 'BREW /pot HTTP/1.1\r\n\r\n'), 400, 'bad_http', 'over TLS')
  assertErrorShape(t, await exchange(open, 'GET /v1/users/%E0%A4%A HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'), 400, 'bad_url', 'bad URL over TLS')
})

t.test('deeply nested JSON bodies are a 400 naming the limit, never a 500', async t => {
  const tc = await testController(t)
  const before = tc.store.users.size
  const deep = 5000
  const bodies = {
    arrays: '['.repeat(deep) + ']'.repeat(deep),
    objects: '{"a":'.repeat(deep) + '1' + '}'.repeat(deep),
    'inside a field': `{"name":"alice","email":${'['.repeat(deep)}${']'.repeat(deep)}}`,
    'just over the limit': `{"name":"alice","email":${'['.repeat(MAX_JSON_DEPTH)}${']'.repeat(MAX_JSON_DEPTH)}}`
  }
  for (const [name, payload] of Object.entries(bodies)) {
    for (const url of ['/v1/users', '/v1/authkeys']) {
      const res = await tc.admin.inject({ method: 'POST', url, payload, headers: { 'content-type': 'application/json' } })
      t.equal(res.statusCode, 400, `${name} to ${url}: 400`)
      t.match(res.json(), { error: { code: 'invalid_json', message: new RegExp(`more than ${MAX_JSON_DEPTH} levels deep`) } }, `${name}: says why`)
    }
  }
  const fine = `{"name":"alice","email":${'['.repeat(MAX_JSON_DEPTH - 1)}${']'.repeat(MAX_JSON_DEPTH - 1)}}`
  const res = await tc.admin.inject({ method: 'POST', url: '/v1/users', payload: fine, headers: { 'content-type': 'application/json' } })
  t.equal(res.json().error.field, 'body/email', 'nesting within the limit reaches schema validation')
  const reg = await tc.app.inject({ method: 'POST', url: '/v1/machine/register', payload: bodies.arrays, headers: { 'content-type': 'application/json' } })
  t.equal(reg.statusCode, 400, 'the public registration route too')
  t.equal(tc.store.users.size, before, 'nothing was stored')
})

t.test('__proto__ and constructor keys in a body are refused by name', async t => {
  const tc = await testController(t)
  const cases: Array<[string, string, string]> = [
    ['/v1/users', '{"name":"alice","__proto__":{"admin":true}}', 'body/__proto__'],
    ['/v1/users', '{"constructor":{"prototype":{}},"name":"alice"}', 'body/constructor'],
    ['/v1/authkeys', '{"user":"alice","tags":[{"__proto__":1}]}', 'body/tags/0/__proto__'],
    ['/v1/nodes/laptop/tags', '{"tags":["tag:a"],"x":{"y":{"constructor":1}}}', 'body/x/y/constructor']
  ]
  for (const [url, payload, field] of cases) {
    const res = await tc.admin.inject({ method: 'POST', url, payload, headers: { 'content-type': 'application/json' } })
    t.equal(res.statusCode, 400, `${field}: 400`)
    t.match(res.json(), { error: { code: 'invalid_input', field, message: /is not allowed in a request/ } }, `${field}: named`)
  }
  t.equal(tc.store.users.size, 0, 'nothing was stored')
  t.equal(({} as Record<string, unknown>).admin, undefined, 'no prototype was touched')
})

t.test('a refused WebSocket upgrade is answered in the API error shape', async t => {
  const c = await startController({ stateDir: await tempDir(t), listen: '127.0.0.1:0', logger: false })
  t.teardown(c.close)
  const { port } = new URL(c.url)
  const open = (): Socket => tlsConnect({ host: '127.0.0.1', port: Number(port), rejectUnauthorized: false })
  const upgrade = (method: string, path: string, headers: Record<string, string>): string =>
    `${method} ${path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
    Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('') + '\r\n'
  const good = { 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Version': '13' }
  assertErrorShape(t, await exchange(open, upgrade('GET', '/v1/machine/other', good)), 404, 'not_found', 'upgrade to another path')
  assertErrorShape(t, await exchange(open, upgrade('GET', '/v1/machine/map', { 'Sec-WebSocket-Version': '13' })), 400, 'bad_upgrade', 'no key')
  assertErrorShape(t, await exchange(open, upgrade('GET', '/v1/machine/map', { ...good, 'Sec-WebSocket-Key': 'short' })), 400, 'bad_upgrade', 'a short key')
  const version = await exchange(open, upgrade('GET', '/v1/machine/map', { ...good, 'Sec-WebSocket-Version': '7' }))
  assertErrorShape(t, version, 426, 'bad_upgrade', 'an old version')
  t.match(version.headers, /Sec-WebSocket-Version: 13/, 'says which version it speaks')
})
