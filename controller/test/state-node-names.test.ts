import t from 'tap'
import { testController, registration, call, setupUserKey } from './helpers.js'

t.test('a node name never reads as a node id, so a command given an id or a name hits the node meant', async t => {
  const tc = await testController(t)
  const ck = tc.state.controllerKey.publicKey
  const key = await setupUserKey(tc, { reusable: true, preapproved: true })
  const a = (await call(tc.app, 'POST', '/v1/machine/register', registration(ck, { authKey: key, hostname: 'a' }))).body.node
  const b = await call(tc.app, 'POST', '/v1/machine/register', registration(ck, { authKey: key, hostname: a.id }))
  t.equal(b.status, 200, 'a hostname that reads as an id still joins')
  t.notMatch(b.body.node.name, /^[0-9a-f]{16}$/, 'under a name that is not id-shaped')
  t.equal(tc.state.getNode(a.id)?.name, 'a')
  const del = await call(tc.admin, 'DELETE', `/v1/nodes/${b.body.node.name}`)
  t.equal(del.body.node.id, b.body.node.id, 'deleting by the second node\'s name deletes the second node')
  t.equal(tc.state.getNode(a.id)?.name, 'a', 'the first node is still there')

  const before = tc.store.audit.length
  for (const name of [b.body.node.id, '0123456789abcdef']) {
    const r = await call(tc.admin, 'POST', `/v1/nodes/${a.id}/rename`, { name })
    t.equal(r.status, 400, `rename to ${name} is refused`)
    t.match(r.body.error, { code: 'bad_name', field: 'name', message: /looks like a node id/ })
  }
  t.equal(tc.store.audit.length, before, 'a refused rename changes nothing')
  t.equal((await call(tc.admin, 'POST', `/v1/nodes/${a.id}/rename`, { name: '0123456789abcdeg' })).status, 200, 'one letter past f is a name')
})
