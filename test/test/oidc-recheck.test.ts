import t from 'tap'
import type { IdpRecheckResult } from '@warren/protocol'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startController, type RunningController } from '@warren/controller'
import { setup, startLogin, login, lastAudit, type Setup } from '../src/oidc-flow.js'
import { waitFor } from '../src/process.js'

// IdP groups in the policy and continuous verification, with a real provider: alice's
// membership of the provider's group `engineering` is what lets her reach bob's node,
// and the check at the provider (run on demand here) takes it away.

const POLICY = `{
  "groups": { "group:eng": ["idp:engineering"] },
  "acls": [{ "action": "accept", "src": ["group:eng"], "dst": ["bob@:22"] }],
}`

const SCOPES = ['openid', 'email', 'profile', 'groups', 'offline_access']

/** joined logs alice's laptop and bob's server in and sets the policy. */
async function joined (s: Setup): Promise<{ laptop: { id: string, ipv4: string }, server: { id: string } }> {
  const laptop = await loginNode(s, 'laptop', 'alice')
  const server = await loginNode(s, 'server', 'bob')
  await s.ctl.policy.set(POLICY, 'test', 'idp groups')
  return { laptop, server }
}

async function loginNode (s: Setup, hostname: string, user: string): Promise<{ id: string, ipv4: string }> {
  const started = await startLogin(s.ctl, hostname)
  const page = await login(s, started, user)
  if (page.status !== 200) throw new Error(`login of ${user} failed: ${page.body}`)
  const node = s.ctl.state.listNodes().find(n => n.name === hostname)!
  return { id: node.id, ipv4: node.ipv4 }
}

/** sources are the addresses the policy lets into a node (what its filter admits). */
const sources = (ctl: RunningController, id: string): string[] => ctl.map!.mesh.filterFor(id).flatMap(r => r.srcs)

/** recheck runs `warren admin users recheck [USER]`'s request on the admin socket's app. */
async function recheck (ctl: RunningController, user?: string): Promise<IdpRecheckResult[]> {
  const res = await ctl.adminApp.inject({ method: 'POST', url: '/v1/users/recheck', payload: user !== undefined ? { user } : {} })
  if (res.statusCode !== 200) throw new Error(`recheck answered ${res.statusCode}: ${res.body}`)
  return (JSON.parse(res.body) as { results: IdpRecheckResult[] }).results
}

t.test('an IdP group in a policy group grants access; leaving it at the provider takes it away at the check', async t => {
  const s = await setup(t, { scopes: SCOPES, recheckIntervalMs: 0 }, undefined, true)
  const { laptop, server } = await joined(s)
  t.ok(sources(s.ctl, server.id).includes(`${laptop.ipv4}/32`), 'alice (idp:engineering) may reach bob\'s server')

  t.same(await recheck(s.ctl), [
    { user: 'alice', outcome: 'unchanged', groups: ['engineering'] },
    { user: 'bob', outcome: 'unchanged', groups: ['sales'] }
  ], 'a check with nothing changed at the provider changes nothing')
  t.ok(sources(s.ctl, server.id).includes(`${laptop.ipv4}/32`))

  s.idp.users.get('alice')!.groups = ['marketing']
  t.same(await recheck(s.ctl, 'alice'), [{ user: 'alice', outcome: 'changed', groups: ['marketing'] }])
  t.notOk(sources(s.ctl, server.id).includes(`${laptop.ipv4}/32`), 'out of the group at the provider: bob\'s filter no longer admits her')
  t.match(lastAudit(s.ctl, 'idp.recheck'), { target: 'alice', detail: { outcome: 'changed', groups: ['marketing'], previous: ['engineering'] } })
  t.equal(s.ctl.state.getNode(laptop.id)?.status, 'active', 'her node stays in the mesh: only the group\'s access went')

  // Back in the group: the next login is enough, no check needed.
  s.idp.users.get('alice')!.groups = ['engineering']
  await loginNode(s, 'laptop2', 'alice')
  t.ok(sources(s.ctl, server.id).includes(`${laptop.ipv4}/32`), 'a login refreshes the groups')
})

t.test('the check runs by itself at --oidc-recheck-interval', async t => {
  const s = await setup(t, { scopes: SCOPES, recheckIntervalMs: 200 }, undefined, true)
  const { laptop, server } = await joined(s)
  t.ok(sources(s.ctl, server.id).includes(`${laptop.ipv4}/32`))
  s.idp.users.get('alice')!.groups = []
  await waitFor(() => !sources(s.ctl, server.id).includes(`${laptop.ipv4}/32`), { timeoutMs: 30_000, message: 'the periodic check taking alice out of group:eng' })
  t.match(lastAudit(s.ctl, 'idp.recheck'), { target: 'alice', detail: { outcome: 'changed', groups: [] } })
})

t.test('a user the provider no longer accepts loses their nodes at the check', async t => {
  const s = await setup(t, { scopes: SCOPES, recheckIntervalMs: 0 }, undefined, true)
  const { laptop, server } = await joined(s)
  t.ok(sources(s.ctl, server.id).includes(`${laptop.ipv4}/32`))

  s.idp.users.delete('alice')
  const [result] = await recheck(s.ctl, 'alice')
  t.match(result, { user: 'alice', outcome: 'refused', groups: [], message: /refused to refresh the login/ })
  t.equal(s.ctl.state.getNode(laptop.id)?.status, 'expired', 'her node is expired: she must log in again')
  t.same(sources(s.ctl, server.id), [], 'bob\'s filter admits nobody')
  t.match(lastAudit(s.ctl, 'idp.recheck'), { target: 'alice', detail: { outcome: 'refused', reason: 'idp_refresh_refused', expiredNodes: ['laptop'] } })
  t.match(lastAudit(s.ctl, 'node.expire'), { actor: 'idp-check', target: 'laptop' })
  t.same(await recheck(s.ctl, 'alice'), [{ user: 'alice', outcome: 'no-token', groups: [] }], 'her refresh token is gone with the access')
})

t.test('a provider that cannot be reached changes nothing', async t => {
  const s = await setup(t, { scopes: SCOPES, recheckIntervalMs: 0 }, undefined, true)
  const { laptop, server } = await joined(s)
  await s.idp.close()
  const [result] = await recheck(s.ctl, 'alice')
  t.match(result, { user: 'alice', outcome: 'unavailable', groups: ['engineering'], message: /cannot check the login at the identity provider/ })
  t.equal(s.ctl.state.getNode(laptop.id)?.status, 'active')
  t.ok(sources(s.ctl, server.id).includes(`${laptop.ipv4}/32`), 'alice keeps her access until the provider answers')
})

t.test('a check names the user to check, or refuses clearly', async t => {
  const s = await setup(t, { scopes: SCOPES, recheckIntervalMs: 0 })
  const res = await s.ctl.adminApp.inject({ method: 'POST', url: '/v1/users/recheck', payload: { user: 'nobody' } })
  t.equal(res.statusCode, 404)
  t.match(JSON.parse(res.body), { error: { code: 'user_not_found' } })
  await s.ctl.state.createUser({ name: 'dave' }, 'test')
  const local = await s.ctl.adminApp.inject({ method: 'POST', url: '/v1/users/recheck', payload: { user: 'dave' } })
  t.equal(local.statusCode, 409)
  t.match(JSON.parse(local.body), { error: { code: 'user_not_idp', message: /never logged in at the identity provider/ } })

  const dir = mkdtempSync(join(tmpdir(), 'warren-no-oidc-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const plain = await startController({ stateDir: dir, listen: '127.0.0.1:0', logger: false, map: false })
  t.teardown(plain.close)
  const none = await plain.adminApp.inject({ method: 'POST', url: '/v1/users/recheck', payload: {} })
  t.equal(none.statusCode, 409)
  t.match(JSON.parse(none.body), { error: { code: 'oidc_not_configured', message: /no identity provider \(start it with --oidc-issuer\)/ } })
})

t.test('--oidc-require-amr refuses logins without those amr values', async t => {
  const idpSetup = await setup(t)
  const tampered = (amr: string[]): typeof fetch => idpSetup.idp.tamperingFetch(c => { c.amr = amr })
  const weak = await setup(t, { requireAmr: ['mfa', 'hwk'], fetch: tampered(['pwd']) }, idpSetup.idp)
  const page = await login(weak, await startLogin(weak.ctl), 'alice')
  t.equal(page.status, 403)
  t.match(page.body, /alice@example\.com authenticated with pwd, but this mesh requires mfa and hwk \(--oidc-require-amr\); log in again with mfa and hwk/)
  t.match(lastAudit(weak.ctl, 'login.refused'), { detail: { reason: 'amr_missing', email: 'alice@example.com' } })
  t.equal(weak.ctl.state.listNodes().length, 0, 'no node joined')

  const none = await setup(t, { requireAmr: ['mfa'] }, idpSetup.idp)
  const page2 = await login(none, await startLogin(none.ctl), 'alice')
  t.equal(page2.status, 403)
  t.match(page2.body, /did not say how they authenticated \(no amr claim\)/)

  const strong = await setup(t, { requireAmr: ['mfa', 'hwk'], fetch: tampered(['pwd', 'mfa', 'hwk']) }, idpSetup.idp)
  const ok = await login(strong, await startLogin(strong.ctl), 'alice')
  t.equal(ok.status, 200, ok.body)
})
