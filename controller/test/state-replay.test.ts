import t from 'tap'
import { testController, registration, call, setupUserKey, newMachine } from './helpers.js'
import { createReplayGuard } from '../src/state/replay-guard.js'

const SKEW = 5 * 60_000

t.test('a signed registration cannot be replayed, for example to undo an admin\'s expire', async t => {
  const tc = await testController(t)
  const key = await setupUserKey(tc, { reusable: true, preapproved: true })
  const m = newMachine()
  const signed = registration(tc.state.controllerKey.publicKey, { authKey: key, m, hostname: 'box', timestamp: tc.clock.now })
  const first = await call(tc.app, 'POST', '/v1/machine/register', signed)
  t.equal(first.status, 200)
  t.equal((await call(tc.admin, 'POST', '/v1/nodes/box/expire', {})).body.node.status, 'expired')

  tc.clock.now += 60_000
  const audit = tc.store.audit.length
  const replay = await call(tc.app, 'POST', '/v1/machine/register', signed)
  t.equal(replay.status, 409)
  t.match(replay.body.error, { code: 'registration_replayed', message: /already used/ })
  t.equal(tc.state.getNode('box')?.status, 'expired', 'the node stays expired')
  t.equal(tc.store.audit.length, audit, 'a refused replay changes nothing')

  const fresh = await call(tc.app, 'POST', '/v1/machine/register', registration(tc.state.controllerKey.publicKey, { authKey: key, m, hostname: 'box', timestamp: tc.clock.now }))
  t.equal(fresh.status, 200, 'a freshly signed registration from the same machine is accepted')
  t.equal(fresh.body.node.status, 'active')

  tc.clock.now += SKEW
  t.equal((await call(tc.app, 'POST', '/v1/machine/register', signed)).body.error.code, 'clock_skew', 'past the window the clock check refuses it')
})

t.test('a refused registration is not remembered, so the node may send it again', async t => {
  const tc = await testController(t)
  const key = await setupUserKey(tc, { reusable: true, preapproved: true, tags: ['tag:a'] })
  const signed = registration(tc.state.controllerKey.publicKey, { authKey: key, requestTags: ['tag:b'], timestamp: tc.clock.now })
  t.equal((await call(tc.app, 'POST', '/v1/machine/register', signed)).body.error.code, 'tag_not_allowed')
  t.equal((await call(tc.app, 'POST', '/v1/machine/register', signed)).body.error.code, 'tag_not_allowed')
})

t.test('the replay guard forgets registrations once they are out of the window', async t => {
  const clock = { now: 1_000_000 }
  const guard = createReplayGuard(SKEW, () => clock.now)
  for (let i = 0; i < 1000; i++) guard.remember(`payload ${i}`, clock.now)
  t.ok(guard.seen('payload 7'))
  t.notOk(guard.seen('payload x'))
  t.equal(guard.size, 1000)
  clock.now += SKEW + 1
  t.notOk(guard.seen('payload 7'), 'out of the window')
  guard.remember('later', clock.now)
  t.equal(guard.size, 1, 'expired entries are dropped')
  guard.remember('future', clock.now + SKEW)
  clock.now += SKEW + 1
  t.ok(guard.seen('future'), 'a request stamped ahead of our clock is remembered until its own window ends')
})
