import t from 'tap'
import { testController } from './helpers.js'
import { policyRoutes } from '../src/routes/policy.js'

// The policy API with Tailscale's ssh section: accepted with its tests, and every answer
// that accepts it says the rules grant nothing until Warren has an SSH server.

const SSH = `{
  "tagOwners": { "tag:server": ["alice@"] },
  "acls": [ { "action": "accept", "src": ["alice@"], "dst": ["tag:server:22"] } ],
  "ssh": [ { "action": "accept", "src": ["alice@"], "dst": ["tag:server"], "users": ["root"] } ],
  "sshTests": [ { "src": "alice@", "dst": ["tag:server"], "accept": ["root"], "deny": ["ubuntu"] } ],
}`
const NO_SERVER = /^4:10: the ssh rules are checked and compiled but grant nothing yet: Warren has no SSH server, so no node enforces them; who may reach port 22 stays decided by acls and grants$/

t.test('policy check and set take ssh rules and say plainly that they grant nothing yet', async t => {
  const tc = await testController(t, { app: { plugins: [policyRoutes()] } })
  await tc.state.createUser({ name: 'alice', email: 'alice@example.com' }, 'test')
  const call = async (method: 'PUT' | 'POST', url: string, payload: object) => {
    const res = await tc.admin.inject({ method, url, payload })
    return { status: res.statusCode, body: res.json() }
  }

  let r = await call('POST', '/v1/policy/check', { text: SSH })
  t.equal(r.status, 200)
  t.equal(r.body.ok, true)
  t.match(r.body.warnings, [NO_SERVER])
  t.equal(r.body.warnings.length, 1)

  r = await call('PUT', '/v1/policy', { text: SSH.replace('"deny": ["ubuntu"]', '"deny": ["root"]') })
  t.equal(r.status, 400)
  t.equal(r.body.error.code, 'policy_tests_failed', 'a failing sshTest refuses the policy like a failing test')
  t.match(r.body.error.message, /^the policy was not applied: its tests fail:\n5:88: ssh test 1: alice@ -> tag:server as root expected deny but ssh rule 1 \(line 4\) lets it in without a check$/)

  r = await call('PUT', '/v1/policy', { text: SSH, message: 'ssh carried over' })
  t.equal(r.status, 200)
  t.equal(r.body.version, 1)
  t.match(r.body.warnings, [NO_SERVER])
})
