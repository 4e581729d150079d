import t from 'tap'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import type { Node } from '@warren/protocol'
import { testController, registration, call, setupUserKey, newMachine, tempDir, pinnedRequest, socketRequest } from './helpers.js'
import { startController } from '../src/server.js'

t.test('map-server hooks: online, endpoints and lastSeen are cheap and announced', async t => {
  let tc = await testController(t)
  const key = await setupUserKey(tc, { preapproved: true })
  const node = (await call(tc.app, 'POST', '/v1/machine/register', registration(tc.state.controllerKey.publicKey, { authKey: key, hostname: 'a' }))).body.node
  const seen: Array<[Partial<Node>, Partial<Node> | undefined]> = []
  tc.state.events.on('node-upserted', (n, prev) => seen.push([{ online: n.online, endpoints: n.endpoints }, prev && { online: prev.online }]))
  t.same(tc.state.nodeByMachineKey(node.machineKey)?.id, node.id)

  tc.clock.now += 1000
  tc.state.setOnline(node.id, true)
  tc.state.setOnline(node.id, true)
  tc.state.setEndpoints(node.id, ['192.0.2.1:41641'])
  tc.state.setEndpoints(node.id, ['192.0.2.1:41641'])
  t.same(seen, [
    [{ online: true, endpoints: [] }, { online: false }],
    [{ online: true, endpoints: ['192.0.2.1:41641'] }, { online: true }]
  ], 'only real changes are announced')
  t.equal(tc.state.getNode(node.id)?.lastSeen, new Date(tc.clock.now).toISOString())
  tc.clock.now += 5000
  tc.state.touchLastSeen(node.id)
  const lastSeen = new Date(tc.clock.now).toISOString()
  t.equal(seen.length, 2, 'lastSeen alone is not announced')
  tc.state.setOnline('nope', true)

  tc = await tc.reopen()
  const after = tc.state.getNode(node.id)!
  t.equal(after.lastSeen, lastSeen, 'lastSeen is written when the controller closes')
  t.equal(after.online, false, 'online is runtime state')
  t.same(after.endpoints, [])
})

t.test('a node key reaching its expiry is announced once by the sweep', async t => {
  const tc = await testController(t, { state: { nodeKeyExpiryMs: 60_000 } })
  const key = await setupUserKey(tc, { preapproved: true })
  const m = newMachine()
  const node = (await call(tc.app, 'POST', '/v1/machine/register', registration(tc.state.controllerKey.publicKey, { authKey: key, m, timestamp: tc.clock.now }))).body.node
  const seen: string[] = []
  tc.state.events.on('node-upserted', (n, prev) => seen.push(`${prev?.status ?? '-'}>${n.status}`))
  tc.state.sweepExpired()
  t.same(seen, [])
  tc.clock.now += 61_000
  tc.state.sweepExpired()
  tc.state.sweepExpired()
  t.same(seen, ['active>expired'])
  t.equal(tc.state.getNode(node.id)?.status, 'expired')
  const relog = await call(tc.app, 'POST', '/v1/machine/register', registration(tc.state.controllerKey.publicKey, { m, timestamp: tc.clock.now }))
  t.equal(relog.body.error.code, 'node_key_expired', 'an expired node cannot log in without a new auth key')
})

t.test('a throwing event listener does not fail the change', async t => {
  const errors: string[] = []
  const tc = await testController(t, { state: { onListenerError: (_e, ev) => errors.push(ev) } })
  tc.state.events.on('user-upserted', () => { throw new Error('boom') })
  t.equal((await call(tc.admin, 'POST', '/v1/users', { name: 'alice' })).status, 201)
  t.same(errors, ['user-upserted'])
})

t.test('other modules persist their records with an audit entry', async t => {
  let tc = await testController(t)
  await tc.state.commit([{ type: 'raw-put', key: 'policy!000001', value: { text: '{}' } }], 'local-admin', 'policy.set', 'v1')
  await t.rejects(tc.state.commit([{ type: 'raw-put', key: 'node!x', value: {} }], 'a', 'b', 'c'), /reserved/)
  tc = await tc.reopen()
  t.same(await tc.store.readPrefix('policy!'), [['policy!000001', { text: '{}' }]])
  t.match(tc.state.listAudit().at(-1), { action: 'policy.set', target: 'v1' })
})

t.test('logs carry no keys or secrets', async t => {
  let logged = ''
  const sink = new Writable({ write (chunk, _enc, done) { logged += String(chunk); done() } })
  const dir = await tempDir(t)
  const logger = pino({ level: 'trace', redact: ['req.headers.authorization'] }, sink)
  const c = await startController({ stateDir: dir, listen: '127.0.0.1:0', logger })
  t.teardown(c.close)
  const api = (await socketRequest(c.adminSocket, 'POST', '/v1/apikeys', {})).body.key as string
  await socketRequest(c.adminSocket, 'POST', '/v1/users', { name: 'alice' })
  const authKey = (await socketRequest(c.adminSocket, 'POST', '/v1/authkeys', { user: 'alice' })).body.key as string
  await pinnedRequest(c.url, c.fingerprint, 'GET', '/v1/nodes', undefined, { authorization: `Bearer ${api}` })
  await pinnedRequest(c.url, c.fingerprint, 'GET', '/v1/nodes', undefined, { authorization: 'Bearer wrnapi-000000000000-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' })
  await pinnedRequest(c.url, c.fingerprint, 'POST', '/v1/machine/register', registration(c.state.controllerKey.publicKey, { authKey }))
  t.ok(logged.includes('request completed'), 'requests are logged')
  for (const secret of [api, authKey, api.split('-')[2]!, authKey.split('-')[2]!, c.state.controllerKey.privateKey, 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa']) {
    t.notOk(logged.includes(secret), 'a secret is not in the log')
  }
})

t.test('a continuous check that a login overtook writes nothing: the login\'s groups and token stand', async t => {
  const tc = await testController(t)
  const id = { issuer: 'https://idp.example', subject: 'alice-1', email: 'alice@example.com', groups: ['engineering'] }
  await tc.state.loginIdpUser(id)
  const user = (): NonNullable<ReturnType<typeof tc.state.store.users.get>> => [...tc.state.store.users.values()].find(u => u.idp?.subject === 'alice-1')!
  const asOf = user().idp!.lastLogin
  // the check asked the provider; meanwhile alice logs in again, with new groups
  tc.clock.now += 1000
  await tc.state.loginIdpUser({ ...id, groups: ['engineering', 'ops'] })
  t.equal(await tc.state.recheckIdpUser(user().name, asOf, [], [], { outcome: 'refused' }), false, 'the stale check is refused')
  t.same(user().idp!.groups, ['engineering', 'ops'], 'the login\'s groups stand')
  const audits = tc.state.listAudit().filter(e => e.action === 'idp.recheck')
  t.equal(audits.length, 0, 'and no check is recorded')
  t.equal(await tc.state.recheckIdpUser(user().name, user().idp!.lastLogin, ['ops'], []), true, 'a check from the latest login is stored')
  t.same(user().idp!.groups, ['ops'])
})
