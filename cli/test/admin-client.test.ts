import t from 'tap'
import { join } from 'node:path'
import { parseCredential } from '@warren/protocol'
import { startController } from '@warren/controller'
import { createAdminClient } from '@warren/sdk'
import { tempDir, joinNode, rejection } from './cli-harness.js'

t.test('the SDK admin client covers every admin route, locally and remotely', async tt => {
  const stateDir = join(tempDir(tt), 'state')
  const ctl = await startController({ stateDir, listen: '127.0.0.1:0', logger: false, rateLimit: false })
  tt.teardown(async () => { await ctl.close() })
  const local = createAdminClient({ stateDir })
  tt.teardown(() => { local.close() })
  tt.equal(local.where, `the controller's admin socket ${join(stateDir, 'admin.sock')}`)

  const alice = await local.users.create({ name: 'alice', email: 'alice@example.com' })
  tt.equal(alice.email, 'alice@example.com')
  tt.same((await local.users.list()).map(u => u.name), ['alice'])

  const { key: apiKey, apiKey: apiInfo } = await local.apiKeys.create({ description: 'sdk test' })
  tt.equal(parseCredential(apiKey, 'api').fingerprint, ctl.fingerprint, 'API keys carry the pin')
  const remote = createAdminClient({ controller: ctl.url, apiKey })
  tt.teardown(() => { remote.close() })

  const { key: authKey, authKey: authInfo } = await remote.authKeys.create({ user: 'alice', reusable: true, tags: ['tag:web'] })
  tt.equal(parseCredential(authKey, 'auth').fingerprint, ctl.fingerprint, 'auth keys carry the pin')
  tt.same((await remote.authKeys.list()).map(k => k.id), [authInfo.id])

  const joined = await joinNode(ctl, authKey, 'db')
  tt.equal((await remote.nodes.get('db')).id, joined.id, 'nodes are found by name')
  tt.equal((await remote.nodes.get(joined.id)).name, 'db', 'and by id')
  tt.equal((await remote.nodes.approve('db')).status, 'active')
  tt.equal((await remote.nodes.rename('db', 'db-1')).name, 'db-1')
  tt.same((await remote.nodes.setTags('db-1', ['tag:db'])).tags, ['tag:db'])
  tt.equal((await remote.nodes.expire('db-1')).status, 'expired')
  tt.same((await remote.nodes.list()).map(n => n.name), ['db-1'])
  await remote.nodes.delete('db-1')
  tt.same(await remote.nodes.list(), [])

  tt.equal((await remote.authKeys.expire(authInfo.id)).revoked, true)
  const audit = await local.audit.list({ limit: 3 })
  tt.equal(audit.length, 3, 'audit honours the limit')
  tt.equal(audit.at(-1)!.action, 'authkey.expire', 'newest last')
  tt.same(await remote.request('GET', '/users'), { users: await local.users.list() }, 'the generic request reaches any route')

  const e = await rejection(remote.users.create({ name: 'alice' }))
  tt.equal(e.code, 'user_exists', 'the server\'s error code comes through')
  tt.equal(e.status, 409)
  tt.equal((await rejection(local.nodes.get('nope'))).status, 404)
  tt.equal((await rejection(local.users.create({ name: 'Bad Name' }))).code, 'bad_name', 'bad input is refused before sending')
  tt.equal((await rejection(local.nodes.setTags('x', ['web']))).code, 'bad_tag')

  const relayKey = await remote.apiKeys.create({ scope: 'relay', description: 'relay edge-1' })
  tt.equal(relayKey.apiKey.scope, 'relay', 'the client passes the scope')
  tt.equal(apiInfo.scope, 'admin')
  const asRelay = createAdminClient({ controller: ctl.url, apiKey: relayKey.key })
  tt.teardown(() => { asRelay.close() })
  const scoped = await rejection(asRelay.nodes.list())
  tt.equal(scoped.status, 403, 'a relay key cannot call the admin API')
  tt.equal(scoped.code, 'forbidden_scope')

  await local.apiKeys.expire(apiInfo.id)
  const expired = await rejection(remote.users.list())
  tt.equal(expired.status, 401, `an expired API key is refused: ${expired.message}`)
  tt.throws(() => createAdminClient({ controller: ctl.url }), { code: 'usage' }, 'remote needs an API key')
  tt.throws(() => createAdminClient({}), { code: 'usage' })
})
