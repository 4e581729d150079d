import t from 'tap'
import { testController } from './helpers.js'
import { DEFAULT_POLICY_TEXT, createPolicyEngine, type Policy } from '../src/policy/index.js'
import { policyServiceFor, policyUsers } from '../src/policy-service.js'
import { policyRoutes } from '../src/routes/policy.js'
import { followPolicy } from '../src/server.js'

const GOOD = `{
  // engineers reach the web tier
  "groups": { "group:eng": ["alice@", "zed@"] },
  "tagOwners": { "tag:web": ["group:eng"] },
  "acls": [ { "action": "accept", "src": ["group:eng"], "dst": ["tag:web:443"] } ],
  "tests": [ { "src": "alice@", "accept": ["tag:web:443"], "deny": ["tag:web:22"] } ],
}`

t.test('policy API: get, set (whole or not at all), history, rollback, and it survives a restart', async t => {
  let tc = await testController(t, { app: { plugins: [policyRoutes()] } })
  await tc.state.createUser({ name: 'alice', email: 'alice@example.com' }, 'test')
  const call = async (method: 'GET' | 'PUT' | 'POST', url: string, payload?: object) => {
    const res = await tc.admin.inject({ method, url, ...(payload === undefined ? {} : { payload }) })
    return { status: res.statusCode, body: res.json() }
  }

  let r = await call('GET', '/v1/policy')
  t.equal(r.status, 200)
  t.equal(r.body.version, 0, 'no policy set: the built-in default')
  t.equal(r.body.text, DEFAULT_POLICY_TEXT)

  r = await call('PUT', '/v1/policy', { text: '{\n  "acls": [\n    {"action": "deny", "src": ["group:nope"], "dst": ["*:*"]}\n  ]\n}' })
  t.equal(r.status, 400)
  t.equal(r.body.error.code, 'policy_invalid')
  t.equal(r.body.error.message, 'the policy was not applied:\n3:16: action must be "accept" (rules only allow; everything else is denied)\n3:32: group group:nope is not defined in "groups"')

  r = await call('PUT', '/v1/policy', { text: GOOD.replace('"deny": ["tag:web:22"]', '"deny": ["tag:web:443"]') })
  t.equal(r.status, 400)
  t.equal(r.body.error.code, 'policy_tests_failed')
  t.match(r.body.error.message, /6:69: test 1: alice@ -> tag:web:443\/tcp expected deny but is allowed by rule 1 \(line 5\)/)
  t.equal((await call('GET', '/v1/policy')).body.version, 0, 'a rejected policy changes nothing')

  r = await call('PUT', '/v1/policy', { text: GOOD, message: 'web tier only' })
  t.equal(r.status, 200)
  t.same(r.body, { version: 1, warnings: ['3:39: user zed@ does not exist yet; rules naming it match no device until that user is created'] })
  r = await call('GET', '/v1/policy')
  t.match(r.body, { version: 1, text: GOOD, actor: 'local-admin', message: 'web tier only' })
  const service = await policyServiceFor(tc.state)
  t.ok(service.tagOwnersAllow('alice', 'tag:web'), 'tagOwners now let alice tag her nodes tag:web')
  t.notOk(service.tagOwnersAllow('bob', 'tag:web'))

  r = await call('PUT', '/v1/policy', { text: '{"acls": []}', message: 'lock down' })
  t.equal(r.body.version, 2)
  r = await call('POST', '/v1/policy/rollback', { version: 1 })
  t.same(r.body.version, 3)
  t.equal((await call('GET', '/v1/policy')).body.text, GOOD, 'rollback brings back the old text as a new version')
  r = await call('POST', '/v1/policy/rollback', { version: 99 })
  t.equal(r.status, 404)
  t.equal(r.body.error.code, 'policy_version_not_found')
  r = await call('GET', '/v1/policy/history')
  t.same(r.body.versions.map((v: { version: number, message: string }) => [v.version, v.message]), [[3, 'rollback to v1'], [2, 'lock down'], [1, 'web tier only']])
  t.same(tc.state.listAudit().filter(e => e.action === 'policy.set').map(e => [e.actor, e.target, e.detail]),
    [['local-admin', 'policy v1', { message: 'web tier only' }], ['local-admin', 'policy v2', { message: 'lock down' }], ['local-admin', 'policy v3', { message: 'rollback to v1' }]],
    'every change is in the audit log')

  r = await call('PUT', '/v1/policy', { text: GOOD, extra: 1 })
  t.equal(r.status, 400, 'unknown fields are refused')

  tc = await tc.reopen()
  r = await call('GET', '/v1/policy')
  t.match(r.body, { version: 3, text: GOOD }, 'the policy in force survives a restart')
})

t.test('policy API: check, test, diff and explain change nothing', async t => {
  const tc = await testController(t, { app: { plugins: [policyRoutes()] } })
  await tc.state.createUser({ name: 'alice', email: 'alice@example.com' }, 'test')
  const call = async (url: string, payload: object) => (await tc.admin.inject({ method: 'POST', url, payload })).json()

  let r = await call('/v1/policy/check', { text: '{"acls": [{"action": "accept", "src": ["alice"], "dst": ["*:*"]}]}' })
  t.same(r, { ok: false, errors: ['1:40: "alice" is not a known alias: not a host in "hosts", a user (alice@), group:, tag:, autogroup: or an IP/CIDR (did you mean alice@?)'], warnings: [] })
  r = await call('/v1/policy/check', { text: GOOD })
  t.same(r, { ok: true, errors: [], warnings: ['3:39: user zed@ does not exist yet; rules naming it match no device until that user is created'] })
  r = await call('/v1/policy/check', {})
  t.same(r, { ok: true, errors: [], warnings: [] }, 'without text: the policy in force (warren admin policy test)')

  r = await call('/v1/policy/diff', { text: GOOD })
  t.ok(r.lost.some((a: { src: string, dst: string }) => a.src === 'alice@' && a.dst === 'alice@'), 'leaving allow-all loses alice -> alice')
  t.same(r.gained, [], 'allow-all already allowed everything')

  r = await call('/v1/policy/explain', { src: 'alice@', dst: 'alice@', port: 22 })
  t.match(r, { allowed: true, rules: [{ index: 0 }] })
  r = await call('/v1/policy/explain', { src: 'tag:nope', dst: 'alice@', port: 22 })
  t.equal(r.error.code, 'policy_bad_identity')
  for (const proto of ['__proto__', 'constructor']) {
    const res = await tc.admin.inject({ method: 'POST', url: '/v1/policy/explain', payload: { src: 'alice@', dst: 'alice@', port: 22, proto } })
    t.equal(res.statusCode, 400, `explain with proto ${proto}`)
    t.match(res.json().error, { code: 'policy_bad_proto', message: new RegExp(`unknown proto "${proto}"`) })
    r = await call('/v1/policy/check', { text: `{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"], "proto": "${proto}"}]}` })
    t.match(r, { ok: false, errors: [new RegExp(`unknown proto "${proto}"`)] }, `check with proto ${proto}`)
  }
  t.equal((await tc.admin.inject({ method: 'GET', url: '/v1/policy' })).json().version, 0)
})

t.test('onPolicyChange hears each stored policy, after it is durable, and never a rejected one', async t => {
  const tc = await testController(t, { app: { plugins: [policyRoutes()] } })
  const service = await policyServiceFor(tc.state)
  const heard: Array<{ policy: Policy, stored: number }> = []
  const stop = service.onPolicyChange(policy => {
    heard.push({ policy, stored: tc.state.listAudit().filter(e => e.action === 'policy.set').length })
  })
  await service.set(GOOD, 'test')
  await t.rejects(service.set('{"acls": [{"action": "deny"}]}', 'test'), { code: 'policy_invalid' })
  await service.rollback(0, 'test')
  t.same(heard.map(h => [h.policy.text, h.stored]), [[GOOD, 1], [DEFAULT_POLICY_TEXT, 2]], 'each change heard once, after its audit entry is stored')
  t.equal(service.current(), heard[1]!.policy, 'current() is the policy last heard')
  stop()
  await service.set(GOOD, 'test')
  t.equal(heard.length, 2, 'a stopped listener hears nothing')
})

t.test('the controller\'s engine follows policy and user changes and reports the nodes it touched', async t => {
  const tc = await testController(t)
  const service = await policyServiceFor(tc.state)
  const engine = createPolicyEngine(service.current(), policyUsers(tc.state))
  const seen: string[][] = []
  const follower = followPolicy(tc.state, service, (policy, users) => { seen.push([...engine.setPolicy(policy, users)].sort()) })
  t.teardown(() => follower.close())
  engine.setNodes([
    { id: 'a', name: 'a', user: 'alice', tags: [], ipv4: '100.64.0.1', ipv6: 'fd7a:115c:a1e0::1' },
    { id: 'w', name: 'w', tags: ['tag:web'], ipv4: '100.64.0.2', ipv6: 'fd7a:115c:a1e0::2' },
    { id: 'b', name: 'b', user: 'bob', tags: [], ipv4: '100.64.0.3', ipv6: 'fd7a:115c:a1e0::3' }
  ])
  await service.set(`{
    "groups": { "group:eng": ["alice@example.com"] },
    "tagOwners": { "tag:web": ["group:eng"] },
    "acls": [ { "action": "accept", "src": ["group:eng"], "dst": ["tag:web:443"] } ],
  }`, 'test')
  t.same(seen, [['a', 'b', 'w']], 'everyone loses allow-all')
  t.same([...engine.peersOf('a')], [], 'alice@example.com is nobody until that user exists')
  await tc.state.createUser({ name: 'alice', email: 'alice@example.com' }, 'test')
  t.same(seen[1], ['a', 'w'], 'creating the user resolves the email: alice reaches web')
  t.same([...engine.peersOf('a')], ['w'])
  await tc.state.createUser({ name: 'bob' }, 'test')
  t.equal(seen.length, 2, 'a user the policy does not name by email changes nothing')
})

t.test('policy API: Tailscale-only node attributes are accepted with a warning naming each', async t => {
  const tc = await testController(t, { app: { plugins: [policyRoutes()] } })
  const text = '{\n  "acls": [],\n  "nodeAttrs": [{ "target": ["*"], "attr": ["funnel", "randomize-client-port"] }]\n}'
  const warnings = ['3:45: attribute "funnel" is a Tailscale feature Warren does not have: nodes receive it, but it changes nothing']
  const check = await tc.admin.inject({ method: 'POST', url: '/v1/policy/check', payload: { text } })
  t.same(check.json(), { ok: true, errors: [], warnings }, 'check')
  const set = await tc.admin.inject({ method: 'PUT', url: '/v1/policy', payload: { text } })
  t.equal(set.statusCode, 200)
  t.same(set.json(), { version: 1, warnings }, 'set applies it and says the same')
})
