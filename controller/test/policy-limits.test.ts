import t from 'tap'
import type { ControllerPlugin } from '../src/app.js'
import { createPolicyService, type PolicyServiceOptions } from '../src/policy-service.js'
import { policyRoutes } from '../src/routes/policy.js'
import { testController } from './helpers.js'

/** bigGroupPolicy is the policy that once ran the controller out of memory: one group of `users` named by `rules` rules. */
function bigGroupPolicy (users: number, rules: number): string {
  const members = Array.from({ length: users }, (_, u) => `user${u}@`)
  const tagOwners = Object.fromEntries(Array.from({ length: rules }, (_, r) => [`tag:svc${r}`, ['group:big']]))
  const acls = Array.from({ length: rules }, (_, r) => ({ action: 'accept', src: ['group:big'], dst: [`tag:svc${r}:${1000 + r}`] }))
  return JSON.stringify({ groups: { 'group:big': members }, tagOwners, acls, tests: [{ src: 'user0@', accept: ['tag:svc0:1000'] }] })
}

/** serviceWith mounts the policy routes over a service with the given limits. */
function serviceWith (t: { teardown: (fn: () => unknown) => void }, limits: PolicyServiceOptions): ControllerPlugin {
  return async (app, ctx) => {
    const service = await createPolicyService(ctx.state, limits)
    t.teardown(service.close)
    await policyRoutes(service)(app, ctx)
  }
}

const BIG = bigGroupPolicy(35_000, 400)
/**
 * SMALL_HEAP_MB is a worker heap that a small policy fits in (about 8 MB here) and BIG
 * does not (about 20 MB). Run the file with node or the project's runner: a runner that
 * registers module loaders (tap's own) puts them in the worker too, and then even a
 * small job needs more.
 */
const SMALL_HEAP_MB = 12

t.test('the 35,000-user x 400-rule policy is answered, and other requests are answered meanwhile', async t => {
  const tc = await testController(t, { app: { plugins: [serviceWith(t, {})] } })
  const order: string[] = []
  const check = tc.admin.inject({ method: 'POST', url: '/v1/policy/check', payload: { text: BIG } }).then(res => { order.push('check'); return res })
  const get = await tc.admin.inject({ method: 'GET', url: '/v1/policy' })
  order.push('get')
  t.equal(get.statusCode, 200, 'GET /v1/policy answers while the check runs')
  const res = await check
  t.same(order, ['get', 'check'], 'the GET did not wait for the check')
  t.equal(res.statusCode, 200)
  const body = res.json()
  t.match(body, { ok: true, errors: [] })
  t.equal(body.warnings.length, 101, 'users that do not exist yet: 100 listed, the rest counted')
  t.match(body.warnings[100], /and 34900 more users that do not exist yet \(100 are listed\)/)
  const set = await tc.admin.inject({ method: 'PUT', url: '/v1/policy', payload: { text: BIG } })
  t.equal(set.statusCode, 200, 'and it can be put in force')
  t.equal(set.json().version, 1)
})

t.test('a policy that needs too much time or memory is refused with 422, and nothing changes', async t => {
  for (const [limits, reason] of [[{ timeoutMs: 1 }, /took longer than 0.001 s/], [{ maxMemoryMb: SMALL_HEAP_MB }, new RegExp(`needs more than ${SMALL_HEAP_MB} MB`)]] as const) {
    const tc = await testController(t, { app: { plugins: [serviceWith(t, limits)] } })
    for (const [method, url] of [['POST', '/v1/policy/check'], ['PUT', '/v1/policy'], ['POST', '/v1/policy/diff']] as const) {
      const res = await tc.admin.inject({ method, url, payload: { text: BIG } })
      t.equal(res.statusCode, 422, `${method} ${url} with ${JSON.stringify(limits)}`)
      t.equal(res.json().error.code, 'policy_too_complex')
      t.match(res.json().error.message, reason)
      t.match(res.json().error.message, /nothing changed/)
    }
    const now = (await tc.admin.inject({ method: 'GET', url: '/v1/policy' })).json()
    t.equal(now.version, 0, 'the policy in force is still the old one')
  }
})

t.test('a policy longer than the service takes is refused with 413', async t => {
  const tc = await testController(t)
  const service = await createPolicyService(tc.state, { maxPolicyBytes: 1000 })
  t.teardown(service.close)
  const calls: Array<() => Promise<unknown>> = [async () => await service.check(BIG), async () => await service.set(BIG, 'test'), async () => await service.diff(BIG)]
  for (const call of calls) {
    await t.rejects(call(), { code: 'policy_too_large', status: 413, message: /the policy is \d+ bytes; the limit is 1000 bytes/ })
  }
  t.equal(service.info().version, 0)
})

t.test('after a job runs out of memory, the next request is served by a fresh worker', async t => {
  const tc = await testController(t)
  const service = await createPolicyService(tc.state, { maxMemoryMb: SMALL_HEAP_MB })
  t.teardown(service.close)
  await t.rejects(service.check(BIG), { code: 'policy_too_complex' })
  t.same(await service.check('{"acls": []}'), { ok: true, errors: [], warnings: [] })
})
