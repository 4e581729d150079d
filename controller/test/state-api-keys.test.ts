import t from 'tap'
import { testController, call, type TestController } from './helpers.js'

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
