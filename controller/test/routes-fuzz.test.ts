import t from 'tap'
import fc from 'fast-check'
import type { FastifyInstance } from 'fastify'
import { DEFAULT_POLICY_TEXT } from '../src/policy/index.js'
import { policyRoutes } from '../src/routes/policy.js'
import { testController, registration, setupUserKey, call, type TestController } from './helpers.js'

/**
 * The REST fuzz: random and mutated methods, paths, params, querystrings, headers and
 * bodies for every route, on both servers. Whatever comes in, the controller answers
 * below 500, every error is `{error: {code, message}}`, and a 4xx stores nothing.
 */

type Method = 'GET' | 'POST' | 'PUT' | 'DELETE' | 'PATCH' | 'HEAD' | 'OPTIONS'
const METHODS: Method[] = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS']

/** RouteSpec is one route with values that make it succeed, for the fuzz to mutate. */
interface RouteSpec {
  method: Method
  path: string
  public?: true
  params?: Record<string, string>
  query?: Record<string, string>
  body?: Record<string, unknown>
}

/** Strings that have broken parsers and lookups elsewhere. */
const NASTY_STRINGS = [
  '', ' ', '__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf', '__defineGetter__', 'prototype', '-1', '0', '1e309', 'NaN',
  'null', 'true', '[]', '{}', '%', '%00', '%E0%A4%A', '../../etc/passwd', '\u0000', '\u001b[31m', '\u202e', '\ud800',
  'a'.repeat(300), 'tag:', 'tag:web', 'alice@', '*', '*:*', '100.64.0.1', '::1', 'laptop', 'alice'
]

const nastyString = fc.constantFrom(...NASTY_STRINGS)

/** encodePart percent-encodes a path or query part; lone surrogates, which cannot be encoded, become `x`. */
function encodePart (text: string): string {
  return encodeURIComponent(text.replace(/[\ud800-\udfff]/g, 'x'))
}

const anyText = fc.oneof(nastyString, fc.string({ maxLength: 40 }), fc.string({ unit: 'binary', maxLength: 20 }))
const jsonValue = fc.oneof(
  { weight: 3, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
  { weight: 2, arbitrary: anyText },
  { weight: 1, arbitrary: fc.constantFrom(-1, 0, 2 ** 53, -(2 ** 31), 1.5, 65536, 1e300) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 200 }).map(depth => nest(depth)) }
)

function nest (depth: number): unknown {
  let v: unknown = 1
  for (let i = 0; i < depth; i++) v = i % 2 === 0 ? [v] : { a: v }
  return v
}

/** headerText is a header value node accepts (printable ASCII), so the request reaches the server. */
const headerText = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map(c => String.fromCharCode(c)), maxLength: 60 })

/** bodyArb is a route's valid body, or it changed: a field replaced, dropped or added, the text cut or spliced, or another body. */
function bodyArb (valid: Record<string, unknown> | undefined): fc.Arbitrary<string | undefined> {
  const base = valid ?? {}
  const keys = Object.keys(base)
  const json = (v: unknown): string => JSON.stringify(v) ?? 'null'
  return fc.oneof(
    { weight: 2, arbitrary: fc.constant(valid === undefined ? undefined : json(base)) },
    { weight: 3, arbitrary: keys.length === 0 ? fc.constant(json(base)) : fc.tuple(fc.constantFrom(...keys), jsonValue).map(([k, v]) => json({ ...base, [k]: v })) },
    { weight: 1, arbitrary: keys.length === 0 ? fc.constant(json(base)) : fc.constantFrom(...keys).map(k => { const { [k]: _, ...rest } = base; return json(rest) }) },
    { weight: 2, arbitrary: fc.tuple(fc.oneof(nastyString, fc.string({ maxLength: 12 }), fc.constantFrom('__proto__', 'constructor')), jsonValue).map(([k, v]) => `${json(base).slice(0, -1)}${keys.length > 0 ? ',' : ''}${json(k)}:${json(v)}}`) },
    { weight: 2, arbitrary: jsonValue.map(json) },
    { weight: 1, arbitrary: fc.tuple(fc.nat(), fc.string({ maxLength: 3 })).map(([at, junk]) => { const s = json(base); const i = at % (s.length + 1); return s.slice(0, i) + junk + s.slice(i) }) },
    { weight: 1, arbitrary: fc.integer({ min: 65, max: 5000 }).map(depth => '['.repeat(depth) + ']'.repeat(depth)) }
  )
}

/** paramArb is a path parameter: the valid one, any text, or broken or over-long encodings. */
function paramArb (valid: string): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 3, arbitrary: fc.constant(encodePart(valid)) },
    { weight: 3, arbitrary: anyText.map(encodePart) },
    { weight: 1, arbitrary: fc.constantFrom('%', '%zz', '%E0%A4%A', '%C0%AF', '..', '.', '%2F', 'a%00b', 'x'.repeat(101), 'x'.repeat(1000)) }
  )
}

/** queryArb is a querystring: the route's valid one, random pairs, or broken forms. */
function queryArb (valid: Record<string, string> | undefined): fc.Arbitrary<string> {
  const pairs = fc.array(fc.tuple(fc.oneof(fc.constantFrom('limit', 'after', '__proto__', 'constructor', 'a[b]', ''), fc.string({ maxLength: 8 })), anyText), { maxLength: 3 })
  const encode = (kv: Array<[string, string]>): string => kv.map(([k, v]) => `${encodePart(k)}=${encodePart(v)}`).join('&')
  return fc.oneof(
    { weight: 2, arbitrary: fc.constant(valid === undefined ? '' : encode(Object.entries(valid))) },
    { weight: 2, arbitrary: pairs.map(encode) },
    { weight: 1, arbitrary: fc.constantFrom('%', '%zz=1', 'limit=1&limit=2', 'limit=0', 'limit=99999', 'after=-1', '&&&', '=') }
  )
}

interface FuzzRequest { server: 'admin' | 'public', method: Method, url: string, headers: Record<string, string>, payload: string | undefined }

/** requestArb picks a route and varies its server, method, params, query, body and headers. */
function requestArb (routes: RouteSpec[], apiKey: string): fc.Arbitrary<FuzzRequest> {
  return fc.constantFrom(...routes).chain(route => {
    const paramNames = Object.keys(route.params ?? {})
    return fc.record({
      server: route.public === true ? fc.constant('public' as const) : fc.constantFrom('admin' as const, 'public' as const),
      method: fc.oneof({ weight: 4, arbitrary: fc.constant(route.method) }, { weight: 1, arbitrary: fc.constantFrom(...METHODS) }),
      params: fc.tuple(...paramNames.map(p => paramArb(route.params![p]!))),
      query: queryArb(route.query),
      payload: bodyArb(route.body),
      contentType: fc.oneof(
        { weight: 6, arbitrary: fc.constant('application/json') },
        { weight: 1, arbitrary: fc.constantFrom('', 'application/json; charset=latin1', 'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/jsonx') },
        { weight: 1, arbitrary: headerText }
      ),
      auth: fc.oneof(
        { weight: 6, arbitrary: fc.constant(`Bearer ${apiKey}`) },
        { weight: 1, arbitrary: fc.constantFrom('', 'Bearer', 'Bearer wrnapi-garbage', `Basic ${apiKey}`, `Bearer ${apiKey}x`) },
        { weight: 1, arbitrary: headerText }
      ),
      extra: fc.option(fc.tuple(fc.stringMatching(/^[a-z][a-z0-9-]{0,15}$/), headerText), { nil: undefined })
    }).map(r => {
      let path = route.path
      paramNames.forEach((p, i) => { path = path.replace(`:${p}`, r.params[i]!) })
      const headers: Record<string, string> = {}
      if (r.extra !== undefined && !['host', 'content-length', 'transfer-encoding', 'connection'].includes(r.extra[0])) headers[r.extra[0]] = r.extra[1]
      if (r.payload !== undefined && r.contentType !== '') headers['content-type'] = r.contentType
      if (r.server === 'public' && r.auth !== '') headers.authorization = r.auth
      return { server: r.server, method: r.method, url: r.query === '' ? path : `${path}?${r.query}`, headers, payload: r.payload }
    })
  })
}

/** stored is what a refused request must leave unchanged: record counts and the audit log. */
function stored (tc: TestController): string {
  const s = tc.store
  return JSON.stringify([s.users.size, s.nodes.size, s.authKeys.size, s.apiKeys.size, s.audit.length, s.audit.at(-1)?.seq])
}

t.test('random and mutated requests to every route: no 5xx, the error shape, nothing stored on a 4xx', async t => {
  const tc = await testController(t, { app: { plugins: [policyRoutes()] } })
  const authKey = await setupUserKey(tc, { reusable: true, preapproved: true })
  const ck = tc.state.controllerKey.publicKey
  const node = (await call(tc.app, 'POST', '/v1/machine/register', registration(ck, { authKey, hostname: 'laptop' }))).body.node
  const apiKey: string = (await call(tc.admin, 'POST', '/v1/apikeys', { description: 'fuzz' })).body.key
  // The expire routes get keys of their own, so that expiring them leaves the fuzz its credentials.
  const spareApiKeyId: string = (await call(tc.admin, 'POST', '/v1/apikeys', { description: 'spare' })).body.apiKey.id
  const spareAuthKeyId: string = (await call(tc.admin, 'POST', '/v1/authkeys', { user: 'alice' })).body.authKey.id
  const explain = { src: 'alice@', dst: 'laptop', port: 22, proto: 'tcp' }

  const routes: RouteSpec[] = [
    { method: 'GET', path: '/v1/machine/key', public: true },
    { method: 'POST', path: '/v1/machine/register', public: true, body: registration(ck, { authKey, hostname: 'phone' }) },
    { method: 'GET', path: '/v1/users' },
    { method: 'POST', path: '/v1/users', body: { name: 'bob', email: 'bob@example.com' } },
    { method: 'DELETE', path: '/v1/users/:name', params: { name: 'bob' } },
    { method: 'GET', path: '/v1/authkeys' },
    { method: 'POST', path: '/v1/authkeys', body: { user: 'alice', reusable: true, ephemeral: false, preapproved: true, tags: ['tag:web'], expiry: '1h' } },
    { method: 'POST', path: '/v1/authkeys/:id/expire', params: { id: spareAuthKeyId }, body: {} },
    { method: 'GET', path: '/v1/apikeys' },
    { method: 'POST', path: '/v1/apikeys', body: { description: 'ci', expiry: '1d' } },
    { method: 'POST', path: '/v1/apikeys/:id/expire', params: { id: spareApiKeyId }, body: {} },
    { method: 'GET', path: '/v1/nodes' },
    { method: 'GET', path: '/v1/nodes/:node', params: { node: node.id } },
    { method: 'DELETE', path: '/v1/nodes/:node', params: { node: 'phone' } },
    { method: 'POST', path: '/v1/nodes/:node/approve', params: { node: 'laptop' }, body: {} },
    { method: 'POST', path: '/v1/nodes/:node/rename', params: { node: node.id }, body: { name: 'laptop2' } },
    { method: 'POST', path: '/v1/nodes/:node/expire', params: { node: 'phone' }, body: {} },
    { method: 'POST', path: '/v1/nodes/:node/tags', params: { node: node.id }, body: { tags: ['tag:web'] } },
    { method: 'GET', path: '/v1/audit', query: { limit: '5', after: '1' } },
    { method: 'GET', path: '/v1/policy' },
    { method: 'PUT', path: '/v1/policy', body: { text: DEFAULT_POLICY_TEXT, message: 'fuzz' } },
    { method: 'GET', path: '/v1/policy/history' },
    { method: 'POST', path: '/v1/policy/rollback', body: { version: 1, message: 'back' } },
    { method: 'POST', path: '/v1/policy/check', body: { text: DEFAULT_POLICY_TEXT } },
    { method: 'POST', path: '/v1/policy/diff', body: { text: DEFAULT_POLICY_TEXT } },
    { method: 'POST', path: '/v1/policy/explain', body: explain }
  ]
  const apps: Record<FuzzRequest['server'], FastifyInstance> = { admin: tc.admin, public: tc.app }
  const seen = new Map<number, number>()
  const send = async (req: FuzzRequest): Promise<void> => {
    const before = stored(tc)
    const res = await apps[req.server].inject({ method: req.method, url: req.url, headers: req.headers, ...(req.payload !== undefined ? { payload: req.payload } : {}) })
    seen.set(res.statusCode, (seen.get(res.statusCode) ?? 0) + 1)
    const what = `${req.method} ${req.url} on ${req.server} with ${(req.payload ?? '').slice(0, 200)} answered ${res.statusCode}: ${res.body.slice(0, 300)}`
    if (res.statusCode >= 500) throw new Error(what)
    if (res.statusCode < 400) return
    if (stored(tc) !== before) throw new Error(`stored something: ${what}`)
    if (req.method === 'HEAD') return
    const body: unknown = JSON.parse(res.body)
    const error = (body as { error?: { code?: unknown, message?: unknown } }).error
    if (typeof error?.code !== 'string' || typeof error.message !== 'string' || error.message === '') throw new Error(`not {error: {code, message}}: ${what}`)
  }

  await fc.assert(fc.asyncProperty(requestArb(routes, apiKey), send), { seed: 20_261_207, numRuns: 300 })

  // Every path parameter and every string field of every body, set to each nasty string in turn.
  const json = { 'content-type': 'application/json' }
  for (const route of routes) {
    const url = (params: Record<string, string>): string => Object.entries(params).reduce((path, [k, v]) => path.replace(`:${k}`, encodePart(v)), route.path)
    const server = route.public === true ? 'public' : 'admin'
    const headers = server === 'public' ? json : { ...json, authorization: `Bearer ${apiKey}` }
    for (const nasty of NASTY_STRINGS) {
      for (const p of Object.keys(route.params ?? {})) {
        await send({ server, method: route.method, url: url({ ...route.params, [p]: nasty }), headers, payload: route.body === undefined ? undefined : JSON.stringify(route.body) })
      }
      for (const [k, v] of Object.entries(route.body ?? {})) {
        if (typeof v !== 'string') continue
        await send({ server, method: route.method, url: url(route.params ?? {}), headers, payload: JSON.stringify({ ...route.body, [k]: nasty }) })
      }
    }
  }

  t.ok([...seen.keys()].some(s => s < 300), `some requests succeeded (status counts ${JSON.stringify(Object.fromEntries(seen))})`)
  t.ok([...seen.keys()].some(s => s >= 400), 'and some were refused')
  t.equal((await call(tc.admin, 'GET', '/v1/users')).status, 200, 'the controller still answers')
})
