import t from 'tap'
import { testController, registration, call, setupUserKey, type TestController } from './helpers.js'

/** stored is what the store holds of nodes and users, to show that a refused request changed nothing. */
function stored (tc: TestController): string {
  return JSON.stringify([[...tc.store.users.values()], [...tc.store.nodes.values()].map(n => n.postureAttrs), tc.store.audit.length])
}

t.test('users have roles: the first one owns the controller, later ones are members unless given one', async t => {
  const tc = await testController(t)
  t.equal((await call(tc.admin, 'POST', '/v1/users', { name: 'alice' })).body.user.role, 'owner')
  t.equal((await call(tc.admin, 'POST', '/v1/users', { name: 'bob' })).body.user.role, 'member')
  t.equal((await call(tc.admin, 'POST', '/v1/users', { name: 'carl', role: 'auditor' })).body.user.role, 'auditor')
  const r = await call(tc.admin, 'POST', '/v1/users/bob/role', { role: 'network-admin' })
  t.equal(r.status, 200)
  t.equal(r.body.user.role, 'network-admin')
  t.match(tc.state.listAudit().at(-1), { action: 'user.role', target: 'bob', detail: { role: 'network-admin', before: 'member' } })

  const before = stored(tc)
  const bad = await call(tc.admin, 'POST', '/v1/users/bob/role', { role: 'superuser' })
  t.equal(bad.status, 400)
  t.match(bad.body.error.message, /role/)
  t.equal((await call(tc.admin, 'POST', '/v1/users/nobody/role', { role: 'admin' })).status, 404)
  const last = await call(tc.admin, 'POST', '/v1/users/alice/role', { role: 'admin' })
  t.equal(last.status, 409)
  t.match(last.body.error.message, /only owner; make another user owner first/)
  t.equal(stored(tc), before, 'refusals change nothing')
  t.equal((await call(tc.admin, 'POST', '/v1/users/bob/role', { role: 'owner' })).status, 200)
  t.equal((await call(tc.admin, 'POST', '/v1/users/alice/role', { role: 'admin' })).body.user.role, 'admin', 'with another owner, alice may step down')
})

t.test('users stored before roles existed read as members', async t => {
  const tc = await testController(t)
  await setupUserKey(tc)
  const rec = [...tc.store.users.values()][0]!
  delete rec.role
  t.equal((await call(tc.admin, 'GET', '/v1/users')).body.users[0].role, 'member')
})

t.test('node attributes: admins set and unset custom ones; node: ones are the node\'s own', async t => {
  const tc = await testController(t)
  const key = await setupUserKey(tc)
  await call(tc.app, 'POST', '/v1/machine/register', registration(tc.state.controllerKey.publicKey, { authKey: key, hostname: 'laptop' }))
  t.same((await call(tc.admin, 'GET', '/v1/nodes/laptop/attrs')).body, { node: 'laptop', attrs: {} })
  const set = await call(tc.admin, 'POST', '/v1/nodes/laptop/attrs', { set: { 'custom:managed': true, 'custom:tier': 'prod', 'custom:score': 80 } })
  t.equal(set.status, 200)
  t.same(set.body.node.postureAttrs, { 'custom:managed': true, 'custom:score': 80, 'custom:tier': 'prod' })
  const id = set.body.node.id as string
  await tc.state.reportHostAttrs(id, { 'node:os': 'linux', 'node:tsVersion': '0.1.0' })
  await call(tc.admin, 'POST', '/v1/nodes/laptop/attrs', { unset: ['custom:tier'] })
  t.same((await call(tc.admin, 'GET', '/v1/nodes/laptop/attrs')).body.attrs, { 'custom:managed': true, 'custom:score': 80, 'node:os': 'linux', 'node:tsVersion': '0.1.0' })
  await tc.state.reportHostAttrs(id, { 'node:os': 'linux' })
  t.same(tc.state.getNode('laptop')!.postureAttrs, { 'custom:managed': true, 'custom:score': 80, 'node:os': 'linux' }, 'a new report replaces the node: attributes and keeps the custom ones')
  t.same(tc.state.listAudit().slice(-4).map(e => `${e.actor} ${e.action}`), [
    'local-admin node.attrs', `node:${id} node.attrs.report`, 'local-admin node.attrs', `node:${id} node.attrs.report`], 'each change is audited, with who made it')

  const before = stored(tc)
  for (const body of [{ set: { 'node:os': 'macos' } }, { set: { 'custom:bad key': 1 } }, { unset: ['node:os'] }, { set: { 'custom:x': { nested: 1 } } }]) {
    const r = await call(tc.admin, 'POST', '/v1/nodes/laptop/attrs', body)
    t.equal(r.status, 400, JSON.stringify(body))
  }
  const both = await call(tc.admin, 'POST', '/v1/nodes/laptop/attrs', { set: { 'custom:x': 1 }, unset: ['custom:x'] })
  t.match(both.body.error.message, /both set and unset/)
  t.equal((await call(tc.admin, 'GET', '/v1/nodes/nope/attrs')).status, 404)
  t.equal(stored(tc), before, 'refusals change nothing')
})
