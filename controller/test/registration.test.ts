import t from 'tap'
import { PROTOCOL_VERSION, parseCredential } from '@warren/protocol'
import { testController, registration, call, setupUserKey, newMachine } from './helpers.js'

const register = async (tc: Awaited<ReturnType<typeof testController>>, body: unknown) => await call(tc.app, 'POST', '/v1/machine/register', body)

t.test('GET /v1/machine/key tells a node the protocol version, controller key and domain', async t => {
  const tc = await testController(t)
  const r = await call(tc.app, 'GET', `/v1/machine/key?version=${PROTOCOL_VERSION}`)
  t.equal(r.status, 200)
  t.same(r.body, { version: PROTOCOL_VERSION, controllerKey: tc.state.controllerKey.publicKey, domain: 'warren.internal' })
})

t.test('a node registers with a preapproved key and gets addresses, a name and an owner', async t => {
  const tc = await testController(t)
  const key = await setupUserKey(tc, { preapproved: true })
  const r = await register(tc, registration(tc.state.controllerKey.publicKey, { authKey: key, hostname: 'Laptop.local' }))
  t.equal(r.status, 200, JSON.stringify(r.body))
  const n = r.body.node
  t.equal(n.name, 'laptop')
  t.equal(n.fqdn, 'laptop.warren.internal')
  t.equal(n.user, 'alice')
  t.same(n.tags, [])
  t.equal(n.status, 'active')
  t.equal(n.ipv4, '100.64.0.1')
  t.match(n.ipv6, /^fd[0-9a-f]{2}:[0-9a-f]{1,4}:[0-9a-f]{1,4}::6440:1$/)
  t.ok(Date.parse(n.keyExpiry) > Date.now() + 179 * 86_400_000, 'node key expires in 180 days')
  const k = (await call(tc.admin, 'GET', '/v1/authkeys')).body.authKeys[0]
  t.equal(k.used, true, 'the key is marked used')
  const audit = (await call(tc.admin, 'GET', '/v1/audit')).body.entries
  t.match(audit.at(-1), { action: 'node.register', target: 'laptop', actor: `authkey:${k.id}` })
})

t.test('registration refuses bad proofs and bad keys with distinct errors, storing nothing', async t => {
  const tc = await testController(t)
  const ck = tc.state.controllerKey.publicKey
  const key = await setupUserKey(tc)
  const expect = async (body: unknown, status: number, code: string, name: string): Promise<void> => {
    const r = await register(tc, body)
    t.equal(r.status, status, `${name}: ${JSON.stringify(r.body)}`)
    t.equal(r.body.error.code, code, name)
    t.equal(tc.state.listNodes().length, 0, `${name}: no node stored`)
  }
  const good = registration(ck, { authKey: key })
  await expect({ ...good, hostname: 'other' }, 401, 'bad_signature', 'signature over other fields')
  await expect({ ...good, signature: registration(ck, { authKey: key }).signature }, 401, 'bad_signature', 'signature by another machine key')
  const otherWg = newMachine()
  await expect(registration(newMachine().wg.publicKey, { authKey: key, m: otherWg }), 401, 'bad_wg_proof', 'proof against another controller key')
  await expect(registration(ck, { authKey: key, version: PROTOCOL_VERSION + 1 }), 400, 'protocol_version', 'newer protocol version')
  const v = await register(tc, registration(ck, { authKey: key, version: PROTOCOL_VERSION + 1 }))
  t.match(v.body.error.message, /protocol version/, 'the version error says what is wrong')
  await expect(registration(ck, { authKey: key, timestamp: Date.now() - 10 * 60_000 }), 401, 'clock_skew', 'old timestamp')
  await expect(registration(ck, { authKey: key.replace(/-([a-z2-7]{32})-/, '-' + 'a'.repeat(32) + '-') }), 401, 'invalid_auth_key', 'wrong secret')
  await expect(registration(ck, { authKey: 'wrnauth-nonsense' }), 401, 'invalid_auth_key', 'malformed key')
  await expect(registration(ck, {}), 401, 'not_registered', 'no key and unknown machine')
  await expect(registration(ck, { authKey: key, requestTags: ['tag:server'] }), 403, 'tag_not_allowed', 'tag the key does not grant')
  t.equal((await call(tc.admin, 'GET', '/v1/authkeys')).body.authKeys[0].used, false, 'the key is still unused')
})

t.test('expired, used and revoked auth keys are refused with their own codes', async t => {
  const tc = await testController(t)
  const ck = tc.state.controllerKey.publicKey
  const single = await setupUserKey(tc)
  t.equal((await register(tc, registration(ck, { authKey: single }))).status, 200)
  const used = await register(tc, registration(ck, { authKey: single }))
  t.equal(used.status, 401)
  t.equal(used.body.error.code, 'auth_key_used')

  const revoked = await setupUserKey(tc, { reusable: true })
  const id = parseCredential(revoked, 'auth').id
  t.equal((await call(tc.admin, 'POST', `/v1/authkeys/${id}/expire`)).status, 200)
  const rr = await register(tc, registration(ck, { authKey: revoked }))
  t.equal(rr.body.error.code, 'auth_key_revoked')

  const short = await setupUserKey(tc, { expiry: '1h' })
  tc.clock.now += 2 * 3600_000
  const er = await register(tc, registration(ck, { authKey: short, timestamp: tc.clock.now }))
  t.equal(er.status, 401)
  t.equal(er.body.error.code, 'auth_key_expired')
  t.equal(tc.state.listNodes().length, 1)
})

t.test('a reusable key registers several nodes with unique names and addresses', async t => {
  const tc = await testController(t)
  const key = await setupUserKey(tc, { reusable: true })
  const names: string[] = []
  const ips = new Set<string>()
  for (let i = 0; i < 4; i++) {
    const r = await register(tc, registration(tc.state.controllerKey.publicKey, { authKey: key, hostname: 'laptop' }))
    names.push(r.body.node.name)
    ips.add(r.body.node.ipv4)
    ips.add(r.body.node.ipv6)
  }
  t.same(names, ['laptop', 'laptop-1', 'laptop-2', 'laptop-3'])
  t.equal(ips.size, 8)
})

t.test('a single-use key used by many nodes at once registers exactly one', async t => {
  const tc = await testController(t)
  const key = await setupUserKey(tc)
  const ck = tc.state.controllerKey.publicKey
  const results = await Promise.all(Array.from({ length: 12 }, async (_, i) => await register(tc, registration(ck, { authKey: key, hostname: `n${i}` }))))
  const ok = results.filter(r => r.status === 200)
  t.equal(ok.length, 1, 'exactly one registration succeeds')
  t.same(results.filter(r => r.status !== 200).map(r => r.body.error.code), Array(11).fill('auth_key_used'))
  t.equal(tc.state.listNodes().length, 1, 'one node exists')
  const again = await tc.reopen()
  t.equal(again.state.listNodes().length, 1, 'and one node after a restart')
})

t.test('pending nodes wait for approval; approval makes them active', async t => {
  const tc = await testController(t)
  const key = await setupUserKey(tc)
  const upserts: string[] = []
  tc.state.events.on('node-upserted', n => upserts.push(n.status))
  const r = await register(tc, registration(tc.state.controllerKey.publicKey, { authKey: key, hostname: 'db' }))
  t.equal(r.body.node.status, 'pending')
  const a = await call(tc.admin, 'POST', '/v1/nodes/db/approve')
  t.equal(a.status, 200)
  t.equal(a.body.node.status, 'active')
  t.same(upserts, ['pending', 'active'], 'the map server hears both states')
  t.match((await call(tc.admin, 'GET', '/v1/audit')).body.entries.at(-1), { action: 'node.approve', actor: 'local-admin', target: 'db' })
})

t.test('a tagged key makes a tagged node without owner; tagOwners can allow more tags', async t => {
  let ciOwnedByAlice = false
  const tc = await testController(t, { state: { tagOwnersAllow: (user, tag) => ciOwnedByAlice && user === 'alice' && tag === 'tag:ci' } })
  const ck = tc.state.controllerKey.publicKey
  const key = await setupUserKey(tc, { tags: ['tag:server', 'tag:db'], reusable: true, preapproved: true, ephemeral: true })
  const a = await register(tc, registration(ck, { authKey: key, hostname: 'web' }))
  t.same(a.body.node.tags, ['tag:db', 'tag:server'])
  t.equal(a.body.node.user, undefined)
  t.equal(a.body.node.ephemeral, true)
  const b = await register(tc, registration(ck, { authKey: key, hostname: 'db', requestTags: ['tag:db'] }))
  t.same(b.body.node.tags, ['tag:db'], 'requested tags within the key are used')
  const c = await register(tc, registration(ck, { authKey: key, requestTags: ['tag:ci'] }))
  t.equal(c.body.error.code, 'tag_not_allowed')
  ciOwnedByAlice = true
  const d = await register(tc, registration(ck, { authKey: key, requestTags: ['tag:ci'] }))
  t.equal(d.status, 200, 'the tagOwners hook lets alice use tag:ci')
  t.same(d.body.node.tags, ['tag:ci'])
})

t.test('re-registration keeps name and addresses; without a key only while not expired', async t => {
  const tc = await testController(t)
  const ck = tc.state.controllerKey.publicKey
  const key = await setupUserKey(tc, { reusable: true, preapproved: true })
  const m = newMachine()
  const first = (await register(tc, registration(ck, { authKey: key, m, hostname: 'box' }))).body.node
  await call(tc.admin, 'POST', '/v1/nodes/box/rename', { name: 'nas' })

  const m2 = { machine: m.machine, wg: newMachine().wg }
  const relog = await register(tc, registration(ck, { m: m2, hostname: 'box' }))
  t.equal(relog.status, 200, JSON.stringify(relog.body))
  t.equal(relog.body.node.id, first.id)
  t.equal(relog.body.node.name, 'nas', 'an admin rename survives')
  t.equal(relog.body.node.ipv4, first.ipv4)
  t.equal(relog.body.node.wgKey, m2.wg.publicKey, 'the proven new WireGuard key is taken')

  await call(tc.admin, 'POST', '/v1/nodes/nas/expire')
  const expired = await register(tc, registration(ck, { m: m2 }))
  t.equal(expired.status, 401)
  t.equal(expired.body.error.code, 'node_key_expired')

  const reauth = await register(tc, registration(ck, { m: m2, authKey: key }))
  t.equal(reauth.status, 200)
  t.equal(reauth.body.node.status, 'active')
  t.equal(reauth.body.node.ipv6, first.ipv6)
  t.equal(tc.state.listNodes().length, 1)
})

t.test('a WireGuard key cannot be registered by two machines', async t => {
  const tc = await testController(t)
  const ck = tc.state.controllerKey.publicKey
  const key = await setupUserKey(tc, { reusable: true })
  const m = newMachine()
  t.equal((await register(tc, registration(ck, { authKey: key, m }))).status, 200)
  const r = await register(tc, registration(ck, { authKey: key, m: { machine: newMachine().machine, wg: m.wg } }))
  t.equal(r.status, 409)
  t.equal(r.body.error.code, 'wg_key_in_use')
})

t.test('registration is rate limited per address', async t => {
  const tc = await testController(t, { app: { rateLimit: { registerMax: 3, windowMs: 60_000 } } })
  const statuses: number[] = []
  for (let i = 0; i < 5; i++) statuses.push((await register(tc, registration(tc.state.controllerKey.publicKey, {}))).status)
  t.same(statuses, [401, 401, 401, 429, 429])
})

t.test('a WireGuard key with bit 255 flipped is the same key: refused, not a second node', async t => {
  const tc = await testController(t)
  const ck = tc.state.controllerKey.publicKey
  const key = await setupUserKey(tc, { reusable: true, preapproved: true })
  const m = newMachine()
  t.equal((await register(tc, registration(ck, { authKey: key, m, hostname: 'one' }))).status, 200)
  const raw = Buffer.from(m.wg.publicKey, 'base64')
  raw[31] = raw[31]! ^ 0x80
  const twin = { machine: newMachine().machine, wg: { privateKey: m.wg.privateKey, publicKey: raw.toString('base64') } }
  const nodes = tc.store.nodes.size
  const r = await register(tc, registration(ck, { authKey: key, m: twin, hostname: 'two' }))
  t.equal(r.status, 400)
  t.match(r.body.error, { code: 'bad_wg_key', field: 'wgKey', message: /canonical/ })
  t.equal(tc.store.nodes.size, nodes, 'no second node holds the same key')
})
