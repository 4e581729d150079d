import t from 'tap'
import { testController, call, registration, setupUserKey, type TestController } from './helpers.js'
import { policyRoutes } from '../src/routes/policy.js'

/** BAD holds text that would corrupt a terminal or hide what it says: one of each kind. */
const BAD: Record<string, string> = {
  NUL: 'a\u0000b',
  'ANSI escape': 'ok\u001b[2J\u001b[31mred',
  newline: 'line one\nline two',
  'carriage return': 'shown\rhidden',
  DEL: 'a\u007fb',
  C1: 'a\u009bb',
  'bidi override': 'evil\u202egnp.exe',
  'bidi isolate': 'a\u2066b',
  'right-to-left mark': 'a\u200fb'
}

function stored (tc: TestController): string {
  return JSON.stringify([tc.store.users.size, tc.store.apiKeys.size, tc.store.nodes.size, tc.store.audit.length])
}

t.test('free text with control, line-break or bidi characters is refused with a 400 naming the field', async t => {
  const tc = await testController(t, { app: { plugins: [policyRoutes()] } })
  const key = await setupUserKey(tc, { reusable: true, preapproved: true })
  const before = stored(tc)
  for (const [kind, text] of Object.entries(BAD)) {
    const cases: Array<[string, string, unknown, string]> = [
      ['POST', '/v1/users', { name: 'mallory', email: `m${text}@example.com` }, 'body/email'],
      ['POST', '/v1/apikeys', { description: text }, 'body/description'],
      ['PUT', '/v1/policy', { text: '{}', message: text }, 'body/message'],
      ['POST', '/v1/policy/rollback', { version: 0, message: text }, 'body/message']
    ]
    for (const [method, url, payload, field] of cases) {
      const res = await tc.admin.inject({ method: method as 'POST', url, payload: payload as object })
      const body = res.json()
      t.equal(res.statusCode, 400, `${kind} in ${field} of ${method} ${url}`)
      t.match(body.error, { code: 'invalid_input', field, message: new RegExp(`^${field} has the wrong form`) })
    }
    const reg = await call(tc.app, 'POST', '/v1/machine/register', registration(tc.state.controllerKey.publicKey, { authKey: key, hostname: `host${text}` }))
    t.equal(reg.status, 400, `${kind} in a registration's hostname`)
    t.equal(reg.body.error.field, 'body/hostname')
  }
  t.equal(stored(tc), before, 'nothing was stored')

  const ok = await call(tc.admin, 'POST', '/v1/users', { name: 'zoe', email: 'zoë@example.com' })
  t.equal(ok.status, 201, 'other Unicode text is fine')
  t.equal((await call(tc.admin, 'POST', '/v1/apikeys', { description: 'CI — deploy key (تجربة)' })).status, 201)
})
