import t from 'tap'
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { parseCredential } from '@warren/protocol'
import { testController, registration, call, setupUserKey, type TestController } from './helpers.js'

/** storedCounts is what the store holds, to show that a refused request changed nothing. */
function storedCounts (tc: TestController): string {
  const s = tc.store
  return JSON.stringify([s.users.size, s.nodes.size, s.authKeys.size, s.apiKeys.size, s.audit.length])
}

t.test('users: create, list, refuse duplicates, delete', async t => {
  const tc = await testController(t)
  const c = await call(tc.admin, 'POST', '/v1/users', { name: 'alice', email: 'alice@example.com' })
  t.equal(c.status, 201)
  t.match(c.body.user, { name: 'alice', email: 'alice@example.com' })
  t.equal((await call(tc.admin, 'POST', '/v1/users', { name: 'alice' })).body.error.code, 'user_exists')
  t.equal((await call(tc.admin, 'POST', '/v1/users', { name: 'bob', email: 'ALICE@example.com' })).body.error.code, 'email_taken')
  t.same((await call(tc.admin, 'GET', '/v1/users')).body.users.map((u: { name: string }) => u.name), ['alice'])
  const d = await call(tc.admin, 'DELETE', '/v1/users/alice')
  t.equal(d.status, 200)
  t.equal((await call(tc.admin, 'DELETE', '/v1/users/alice')).status, 404)
  t.same((await call(tc.admin, 'GET', '/v1/users')).body.users, [])
})

t.test('a user who owns nodes cannot be deleted; deleting a user revokes its keys', async t => {
  const tc = await testController(t)
  const key = await setupUserKey(tc, { reusable: true })
  await call(tc.app, 'POST', '/v1/machine/register', registration(tc.state.controllerKey.publicKey, { authKey: key, hostname: 'laptop' }))
  const r = await call(tc.admin, 'DELETE', '/v1/users/alice')
  t.equal(r.status, 409)
  t.equal(r.body.error.code, 'user_has_nodes')
  t.match(r.body.error.message, /alice.*1 node.*laptop/)
  t.equal((await call(tc.admin, 'DELETE', '/v1/nodes/laptop')).status, 200)
  t.equal((await call(tc.admin, 'DELETE', '/v1/users/alice')).status, 200)
  t.equal((await call(tc.admin, 'GET', '/v1/authkeys')).body.authKeys[0].revoked, true)
})

t.test('auth keys: created with defaults, embed the certificate pin, listed without secrets', async t => {
  const tc = await testController(t)
  await call(tc.admin, 'POST', '/v1/users', { name: 'alice' })
  const r = await call(tc.admin, 'POST', '/v1/authkeys', { user: 'alice', reusable: true, tags: ['tag:web'], expiry: '24h' })
  t.equal(r.status, 201)
  const parsed = parseCredential(r.body.key, 'auth')
  t.equal(parsed.fingerprint, 'ab'.repeat(32), 'the key carries the certificate fingerprint')
  t.equal(parsed.id, r.body.authKey.id)
  t.match(r.body.authKey, { user: 'alice', reusable: true, ephemeral: false, preapproved: false, tags: ['tag:web'], used: false, revoked: false })
  t.ok(Math.abs(Date.parse(r.body.authKey.expires) - tc.clock.now - 86_400_000) < 5000)
  const d = await call(tc.admin, 'POST', '/v1/authkeys', { user: 'alice' })
  t.ok(Math.abs(Date.parse(d.body.authKey.expires) - tc.clock.now - 90 * 86_400_000) < 5000, 'default expiry is 90 days')
  const list = await call(tc.admin, 'GET', '/v1/authkeys')
  t.equal(list.body.authKeys.length, 2)
  t.notOk(JSON.stringify(list.body).includes(parsed.secret), 'the secret is not listed')
  t.notOk('secretHash' in list.body.authKeys[0])

  const unknown = await call(tc.admin, 'POST', '/v1/authkeys', { user: 'mallory' })
  t.equal(unknown.status, 404)
  t.match(unknown.body.error, { code: 'user_not_found', message: /mallory/ })
  const none = await call(tc.admin, 'POST', '/v1/authkeys', {})
  t.equal(none.status, 400)
  t.equal(none.body.error.code, 'missing_owner')
  t.equal((await call(tc.admin, 'POST', '/v1/authkeys/000000000000/expire')).status, 404)
})

t.test('nodes: get by id or name, rename with uniqueness, tags, expire, delete', async t => {
  const tc = await testController(t)
  const key = await setupUserKey(tc, { reusable: true, preapproved: true })
  const ck = tc.state.controllerKey.publicKey
  const a = (await call(tc.app, 'POST', '/v1/machine/register', registration(ck, { authKey: key, hostname: 'laptop' }))).body.node
  await call(tc.app, 'POST', '/v1/machine/register', registration(ck, { authKey: key, hostname: 'phone' }))
  t.equal((await call(tc.admin, 'GET', `/v1/nodes/${a.id}`)).body.node.name, 'laptop')
  t.equal((await call(tc.admin, 'GET', '/v1/nodes/laptop')).body.node.id, a.id)
  t.equal((await call(tc.admin, 'GET', '/v1/nodes/nope')).status, 404)
  t.equal((await call(tc.admin, 'GET', '/v1/nodes')).body.nodes.length, 2)

  const taken = await call(tc.admin, 'POST', '/v1/nodes/laptop/rename', { name: 'phone' })
  t.equal(taken.status, 409)
  t.equal(taken.body.error.code, 'name_taken')
  const bad = await call(tc.admin, 'POST', '/v1/nodes/laptop/rename', { name: 'Not_DNS' })
  t.equal(bad.status, 400)
  t.equal(bad.body.error.field, 'body/name')
  const ren = await call(tc.admin, 'POST', '/v1/nodes/laptop/rename', { name: 'work-laptop' })
  t.equal(ren.body.node.fqdn, 'work-laptop.warren.internal')
  t.equal(tc.state.getNode('laptop'), undefined, 'the old name is free')

  const tagged = await call(tc.admin, 'POST', `/v1/nodes/${a.id}/tags`, { tags: ['tag:web'] })
  t.same(tagged.body.node.tags, ['tag:web'])
  t.equal(tagged.body.node.user, undefined, 'a tagged node has no owner')
  const untagged = await call(tc.admin, 'POST', `/v1/nodes/${a.id}/tags`, { tags: [] })
  t.equal(untagged.body.node.user, 'alice', 'removing tags gives the node back to its creator')

  const ex = await call(tc.admin, 'POST', `/v1/nodes/${a.id}/expire`)
  t.equal(ex.body.node.status, 'expired')
  const removed: string[] = []
  tc.state.events.on('node-removed', n => removed.push(n.id))
  t.equal((await call(tc.admin, 'DELETE', `/v1/nodes/${a.id}`)).status, 200)
  t.same(removed, [a.id])
  t.equal((await call(tc.admin, 'GET', '/v1/nodes')).body.nodes.length, 1)
  const actions = (await call(tc.admin, 'GET', '/v1/audit')).body.entries.map((e: { action: string }) => e.action)
  t.same(actions.slice(-5), ['node.rename', 'node.tags', 'node.tags', 'node.expire', 'node.delete'])
})

t.test('bad input gets a 4xx naming the problem and stores nothing', async t => {
  const tc = await testController(t)
  await call(tc.admin, 'POST', '/v1/users', { name: 'alice' })
  const before = storedCounts(tc)
  const cases: Array<{ name: string, url: string, payload: string, headers?: Record<string, string>, status: number, code: string, message?: RegExp }> = [
    { name: 'malformed JSON', url: '/v1/authkeys', payload: '{"user": "alice",', status: 400, code: 'invalid_json', message: /not valid JSON/ },
    { name: 'wrong type', url: '/v1/authkeys', payload: '{"user":"alice","reusable":"yes"}', status: 400, code: 'invalid_input', message: /^body\/reusable must be boolean$/ },
    { name: 'number for string', url: '/v1/users', payload: '{"name":42}', status: 400, code: 'invalid_input', message: /body\/name must be string/ },
    { name: 'unknown field', url: '/v1/authkeys', payload: '{"user":"alice","colour":"red"}', status: 400, code: 'invalid_input', message: /body\/colour is not a known field/ },
    { name: 'missing field', url: '/v1/users', payload: '{}', status: 400, code: 'invalid_input', message: /body\/name is required/ },
    { name: 'bad pattern', url: '/v1/authkeys', payload: '{"user":"alice","tags":["server"]}', status: 400, code: 'invalid_input', message: /body\/tags\/0/ },
    { name: 'bad duration', url: '/v1/authkeys', payload: '{"user":"alice","expiry":"soon"}', status: 400, code: 'invalid_input', message: /body\/expiry/ },
    { name: 'array body', url: '/v1/users', payload: '[]', status: 400, code: 'invalid_input', message: /body must be a JSON object/ },
    { name: 'oversize body', url: '/v1/users', payload: JSON.stringify({ name: 'x'.repeat(1024 * 1024 + 10) }), status: 413, code: 'body_too_large' },
    { name: 'not JSON', url: '/v1/users', payload: 'name=alice', headers: { 'content-type': 'application/x-www-form-urlencoded' }, status: 415, code: 'unsupported_media_type' },
    { name: 'unknown API key field', url: '/v1/apikeys', payload: '{"expiry":"1d","admin":true}', status: 400, code: 'invalid_input', message: /body\/admin/ },
    { name: 'body on an action without input', url: '/v1/authkeys/000000000000/expire', payload: '{"now":true}', status: 400, code: 'invalid_input', message: /body\/now is not a known field/ }
  ]
  for (const c of cases) {
    const res = await tc.admin.inject({ method: 'POST', url: c.url, payload: c.payload, headers: c.headers ?? { 'content-type': 'application/json' } })
    const body = JSON.parse(res.body)
    t.equal(res.statusCode, c.status, `${c.name}: status`)
    t.equal(body.error.code, c.code, `${c.name}: code`)
    if (c.message !== undefined) t.match(body.error.message, c.message, `${c.name}: message`)
  }
  const bare = await call(tc.admin, 'GET', '/v1/nowhere')
  t.equal(bare.status, 404)
  t.equal(bare.body.error.code, 'not_found')
  t.equal(storedCounts(tc), before, 'nothing was stored')
  const reg = await tc.app.inject({ method: 'POST', url: '/v1/machine/register', payload: '{"version":1,"extra":1}', headers: { 'content-type': 'application/json' } })
  t.equal(reg.statusCode, 400)
  t.equal(storedCounts(tc), before, 'nothing was stored by a bad registration')
})

t.test('remote admin needs a valid API key; keys are hashed at rest', async t => {
  const tc = await testController(t)
  const created = await call(tc.admin, 'POST', '/v1/apikeys', { description: 'ci', expiry: '1d' })
  t.equal(created.status, 201)
  const key: string = created.body.key
  const { id, secret } = parseCredential(key, 'api')
  t.equal(created.body.apiKey.id, id)
  const auth = { authorization: `Bearer ${key}` }

  t.equal((await call(tc.app, 'GET', '/v1/nodes')).body.error.code, 'unauthenticated')
  t.equal((await call(tc.app, 'GET', '/v1/nodes', undefined, { authorization: 'Bearer wrnapi-garbage' })).body.error.code, 'invalid_api_key')
  const wrong = key.replace(secret, 'a'.repeat(32))
  t.equal((await call(tc.app, 'GET', '/v1/nodes', undefined, { authorization: `Bearer ${wrong}` })).status, 401)

  const u = await call(tc.app, 'POST', '/v1/users', { name: 'bob' }, auth)
  t.equal(u.status, 201)
  const audit = (await call(tc.app, 'GET', '/v1/audit', undefined, auth)).body.entries
  t.match(audit.at(-1), { actor: `apikey:${id}`, action: 'user.create', target: 'bob' })
  t.match(audit.at(-2), { actor: 'local-admin', action: 'apikey.create', target: id })
  t.ok((await call(tc.app, 'GET', '/v1/apikeys', undefined, auth)).body.apiKeys[0].lastUsed, 'lastUsed is recorded')

  tc.clock.now += 2 * 86_400_000
  t.equal((await call(tc.app, 'GET', '/v1/nodes', undefined, auth)).body.error.code, 'api_key_expired')
  tc.clock.now -= 2 * 86_400_000
  await call(tc.admin, 'POST', `/v1/apikeys/${id}/expire`)
  t.equal((await call(tc.app, 'GET', '/v1/nodes', undefined, auth)).body.error.code, 'api_key_revoked')

  await tc.state.flush()
  await tc.close()
  const dbDir = join(tc.dir, 'db')
  for (const f of await readdir(dbDir)) {
    const text = (await readFile(join(dbDir, f))).toString('latin1')
    t.notOk(text.includes(secret), `${f} does not contain the API key secret`)
  }
})

t.test('failed admin authentication is rate limited', async t => {
  const tc = await testController(t, { app: { rateLimit: { authFailureMax: 3, windowMs: 60_000 } } })
  const codes: string[] = []
  for (let i = 0; i < 5; i++) codes.push((await call(tc.app, 'GET', '/v1/nodes', undefined, { authorization: 'Bearer wrnapi-x' })).body.error.code)
  t.same(codes, ['invalid_api_key', 'invalid_api_key', 'invalid_api_key', 'rate_limited', 'rate_limited'])
})

t.test('the audit log pages with after and limit', async t => {
  const tc = await testController(t)
  for (const name of ['a1', 'a2', 'a3', 'a4']) await call(tc.admin, 'POST', '/v1/users', { name })
  const two = (await call(tc.admin, 'GET', '/v1/audit?limit=2')).body.entries
  t.same(two.map((e: { target: string }) => e.target), ['a3', 'a4'])
  const after = (await call(tc.admin, 'GET', '/v1/audit?after=1&limit=2')).body.entries
  t.same(after.map((e: { seq: number }) => e.seq), [2, 3])
  t.equal((await call(tc.admin, 'GET', '/v1/audit?limit=lots')).status, 400)
  t.match(two[0].time, /^\d{4}-\d\d-\d\dT/)
})
