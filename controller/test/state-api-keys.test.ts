import t from 'tap'
import { testController, call, type TestController } from './helpers.js'
import { policyRoutes } from '../src/routes/policy.js'

const HOUR = 3_600_000

/** bearer calls the TLS-side admin API with an API key. */
async function bearer (tc: TestController, key: string, method: 'GET' | 'POST', url: string, payload?: unknown): Promise<{ status: number, body: any }> {
  return await call(tc.app, method, url, payload, { authorization: `Bearer ${key}` })
}

t.test('an API key minted by an API key expires no later than its parent and dies with it', async t => {
  let tc = await testController(t)
  const parent = (await call(tc.admin, 'POST', '/v1/apikeys', { expiry: '1h', description: 'ci' })).body
  const child = await bearer(tc, parent.key, 'POST', '/v1/apikeys', { expiry: '36500d' })
  t.equal(child.status, 201)
  t.equal(child.body.apiKey.expires, parent.apiKey.expires, 'the child asked for 100 years and got its parent\'s expiry')
  const short = await bearer(tc, child.body.key, 'POST', '/v1/apikeys', { expiry: '10m' })
  t.ok(Date.parse(short.body.apiKey.expires) < Date.parse(parent.apiKey.expires), 'a shorter expiry than the parent\'s is kept')
  t.equal((await bearer(tc, child.body.key, 'GET', '/v1/users')).status, 200)

  tc = await tc.reopen()
  tc.clock.now += HOUR + 1000
  for (const k of [parent.key, child.body.key]) {
    const r = await bearer(tc, k, 'GET', '/v1/users')
    t.equal(r.status, 401)
    t.equal(r.body.error.code, 'api_key_expired')
  }
})

t.test('revoking an API key stops every key minted from it; local-admin keys have no parent', async t => {
  const tc = await testController(t)
  const root = (await call(tc.admin, 'POST', '/v1/apikeys', { expiry: '1d' })).body
  const child = (await bearer(tc, root.key, 'POST', '/v1/apikeys', {})).body
  const grandchild = (await bearer(tc, child.key, 'POST', '/v1/apikeys', {})).body
  const other = (await call(tc.admin, 'POST', '/v1/apikeys', { expiry: '30d' })).body
  t.equal(grandchild.apiKey.expires, root.apiKey.expires, 'the bound passes down the chain')
  t.notOk('parentId' in grandchild.apiKey, 'the API view is unchanged')

  t.equal((await call(tc.admin, 'POST', `/v1/apikeys/${root.apiKey.id}/expire`, {})).status, 200)
  const r = await bearer(tc, grandchild.key, 'GET', '/v1/users')
  t.equal(r.status, 401)
  t.equal(r.body.error.code, 'api_key_revoked')
  t.match(r.body.error.message, `API key ${grandchild.apiKey.id} was created from API key ${root.apiKey.id} (directly or through other keys), which was revoked`)
  t.equal((await bearer(tc, child.key, 'POST', '/v1/apikeys', {})).status, 401, 'a dead key mints nothing')
  t.equal((await bearer(tc, other.key, 'GET', '/v1/users')).status, 200, 'a key minted by the local admin is unaffected')
  t.ok(Date.parse(other.apiKey.expires) - tc.clock.now > 29 * 24 * HOUR, 'and keeps the expiry it asked for')
})

t.test('a relay key links a relay only: every admin route refuses it with 403 forbidden_scope and changes nothing', async t => {
  const tc = await testController(t, { app: { plugins: [policyRoutes()] } })
  const relay = (await call(tc.admin, 'POST', '/v1/apikeys', { scope: 'relay', description: 'relay edge-1' })).body
  const admin = (await call(tc.admin, 'POST', '/v1/apikeys', { description: 'ci' })).body
  t.equal(relay.apiKey.scope, 'relay')
  t.equal(admin.apiKey.scope, 'admin', 'an admin key by default')
  const listed = (await call(tc.admin, 'GET', '/v1/apikeys')).body.apiKeys
  t.same(listed.map((k: { id: string, scope: string }) => [k.id, k.scope]).sort(), [[relay.apiKey.id, 'relay'], [admin.apiKey.id, 'admin']].sort(), 'the list shows each key\'s scope')
  const before = tc.state.listAudit().length

  const attempts: Array<['GET' | 'POST' | 'PUT', string, unknown?]> = [
    ['GET', '/v1/nodes'],
    ['GET', '/v1/users'],
    ['POST', '/v1/users', { name: 'mallory' }],
    ['POST', '/v1/apikeys', {}],
    ['POST', `/v1/apikeys/${admin.apiKey.id}/expire`, {}],
    ['GET', '/v1/policy'],
    ['PUT', '/v1/policy', { text: '{ "acls": [ { "action": "accept", "src": ["*"], "dst": ["*:*"] } ] }' }]
  ]
  for (const [method, url, payload] of attempts) {
    const r = await call(tc.app, method, url, payload, { authorization: `Bearer ${relay.key}` })
    t.equal(r.status, 403, `${method} ${url} is refused`)
    t.equal(r.body.error.code, 'forbidden_scope')
    t.equal(r.body.error.message, `API key ${relay.apiKey.id} may only link a relay; use an admin key (made with 'warren admin apikeys create') for the admin API`)
  }
  t.equal(tc.state.listAudit().length, before, 'nothing was changed')
  t.equal(tc.state.listUsers().length, 0)
  t.equal((await call(tc.admin, 'GET', '/v1/policy')).body.version, 0, 'the policy is untouched')
  t.equal((await call(tc.app, 'GET', '/v1/nodes', undefined, { authorization: `Bearer ${admin.key}` })).status, 200, 'the admin key still works')

  t.throws(() => tc.state.authenticateApiKey(admin.key, 'relay'), { code: 'forbidden_scope', status: 403, message: /is an admin key, and a relay link takes only a relay key .*'warren admin apikeys create --scope relay'/ }, 'an admin key cannot link a relay')
  t.equal(tc.state.authenticateApiKey(relay.key, 'relay').id, relay.apiKey.id, 'the relay key can')

  const bad = await call(tc.admin, 'POST', '/v1/apikeys', { scope: 'root' })
  t.equal(bad.status, 400)
  t.match(bad.body.error.message, /scope/, 'an unknown scope is refused, naming the field')
})

t.test('a key stored before keys had scopes is an admin key', async t => {
  const tc = await testController(t)
  const made = (await call(tc.admin, 'POST', '/v1/apikeys', { expiry: '1d' })).body
  // As an older controller wrote it: no scope field.
  delete (tc.store.apiKeys.get(made.apiKey.id) as { scope?: string }).scope
  t.equal((await bearer(tc, made.key, 'GET', '/v1/users')).status, 200, 'it still works on the admin API')
  const listed = (await call(tc.admin, 'GET', '/v1/apikeys')).body as { apiKeys: Array<{ id: string, scope: string }> }
  t.equal(listed.apiKeys.find(k => k.id === made.apiKey.id)?.scope, 'admin', 'and is listed as one')
})
