import t from 'tap'
import { LOGIN_START_PATH, LOGIN_WAIT_PATH, LOGIN_CALLBACK_PATH } from '@warren/protocol'
import { startTestIdp } from '../src/oidc-idp.js'
import { setup, newMachine, signedLogin, call, startLogin, openLink, callback, login, lastAudit } from '../src/oidc-flow.js'

// Login at an OpenID provider, through the controller's routes (see ../src/oidc-flow.ts).

t.test('a node logs in at the provider and joins as that user; the link works once', async t => {
  const s = await setup(t)
  const started = await startLogin(s.ctl)
  t.match(started.loginUrl, new RegExp(`^${s.ctl.url}/login/[A-Za-z0-9_-]{20,}$`), 'a login link on the controller')
  const waiting = call(s.ctl, LOGIN_WAIT_PATH, { waitToken: started.waitToken })

  const link = await openLink(s.ctl, started.loginUrl)
  t.equal(link.status, 302)
  const authorize = new URL(link.location!)
  t.equal(authorize.origin, s.idp.issuer, 'the link sends the browser to the provider')
  t.equal(authorize.searchParams.get('code_challenge_method'), 'S256', 'with a PKCE challenge')
  t.ok(authorize.searchParams.get('state') !== null && authorize.searchParams.get('nonce') !== null, 'with state and nonce')

  const back = await s.idp.browse(link.location!, 'alice')
  const page = await callback(s.ctl, back)
  t.equal(page.status, 200, page.body)
  t.match(page.body, /Logged in as alice@example\.com\. Node laptop \(100\.64\.\d+\.\d+\) is now in the mesh/)

  const done = await waiting
  t.equal(done.status, 200)
  t.equal(done.body.status, 'done', 'the waiting node hears the login')
  t.equal(done.body.node.user, 'alice', 'the node belongs to the user who logged in')
  t.equal(done.body.node.status, 'active')
  const expiry = Date.parse(done.body.node.keyExpiry)
  t.ok(expiry > Date.now() + 179 * 86_400_000 && expiry < Date.now() + 181 * 86_400_000, 'its key expires in 180 days')

  const user = s.ctl.state.getUser('alice')!
  t.equal(user.email, 'alice@example.com', 'the user was created with the email')
  const rec = s.ctl.state.store.users.get(user.id)!
  t.same(rec.idp?.groups, ['engineering'], 'the groups claim is kept on the user')
  t.equal(rec.idp?.subject, 'alice')
  t.equal(rec.displayName, 'Alice Liddell')
  t.match(lastAudit(s.ctl, 'login.ok'), { actor: 'idp:alice@example.com', target: 'alice', detail: { outcome: 'created', groups: ['engineering'] } })
  t.match(lastAudit(s.ctl, 'node.register'), { actor: 'user:alice', target: 'laptop', detail: { via: 'login' } })

  const again = await openLink(s.ctl, started.loginUrl)
  t.equal(again.status, 403, 'the login link works once')
  t.match(again.body, /this login link was already used/)
  t.match(lastAudit(s.ctl, 'login.refused'), { target: 'laptop', detail: { reason: 'login_link_used' } })
  const replay = await callback(s.ctl, back)
  t.equal(replay.status, 403, 'the provider\'s answer cannot be replayed')
  t.match(replay.body, /already completed/)

  // A second machine of the same person: the same user, not a new one.
  const second = await startLogin(s.ctl, 'desktop')
  const page2 = await login(s, second, 'alice')
  t.equal(page2.status, 200, page2.body)
  t.equal(s.ctl.state.listUsers().length, 1, 'a returning identity is the same user')
  t.equal(s.ctl.state.getNode('desktop')?.user, 'alice')

  // Policies name people by the email the provider vouched for, and autogroup:member takes them in.
  const allows = async (src: string): Promise<boolean> => {
    await s.ctl.policy.set(JSON.stringify({ acls: [{ action: 'accept', src: [src], dst: ['autogroup:member:22'] }] }), 'local-admin')
    return (await s.ctl.policy.explain('laptop', 'desktop', 22)).allowed
  }
  t.ok(await allows('alice@example.com'), 'a rule for alice@example.com matches the logged-in person\'s nodes')
  t.ok(await allows('autogroup:member'), 'autogroup:member includes them')
  t.notOk(await allows('bob@other.org'), 'a rule for someone else does not')
})

t.test('an admin-made user with the same email is linked, not duplicated', async t => {
  const s = await setup(t)
  await s.ctl.state.createUser({ name: 'ally', email: 'Alice@Example.com' }, 'local-admin')
  const page = await login(s, await startLogin(s.ctl), 'alice')
  t.equal(page.status, 200, page.body)
  t.same(s.ctl.state.listUsers().map(u => u.name), ['ally'], 'no second user')
  t.equal(s.ctl.state.getNode('laptop')?.user, 'ally')
  t.match(lastAudit(s.ctl, 'login.ok'), { detail: { outcome: 'linked' } })
})

t.test('the allow lists refuse people outside them, with a message and an audit entry', async t => {
  const s = await setup(t, { allowedDomains: ['example.com'], allowedGroups: ['engineering'] })
  const cases: Array<[string, RegExp, string]> = [
    ['bob', /bob@other\.org is not in an allowed email domain \(example\.com\)/, 'domain_not_allowed'],
    ['carol', /gave no verified email for subject carol/, 'domain_not_allowed']
  ]
  for (const [user, message, reason] of cases) {
    const started = await startLogin(s.ctl, `${user}-laptop`)
    const waiting = call(s.ctl, LOGIN_WAIT_PATH, { waitToken: started.waitToken })
    const page = await login(s, started, user)
    t.equal(page.status, 403, `${user} is refused`)
    t.match(page.body, message, 'the browser says why')
    const answer = await waiting
    t.equal(answer.status, 403, 'the node hears the refusal')
    t.equal(answer.body.error.code, reason)
    t.match(lastAudit(s.ctl, 'login.refused'), { target: `${user}-laptop`, detail: { reason } })
    t.equal(s.ctl.state.getNode(`${user}-laptop`), undefined, 'no node joined')
  }
  s.idp.users.set('dave', { email: 'dave@example.com', groups: ['sales'] })
  const page = await login(s, await startLogin(s.ctl, 'dave-laptop'), 'dave')
  t.equal(page.status, 403)
  t.match(page.body, /dave@example\.com is in sales, but only members of engineering may log in/)
  t.match(lastAudit(s.ctl, 'login.refused'), { actor: 'idp:dave@example.com', detail: { reason: 'group_not_allowed', groups: ['sales'] } })
  t.equal(s.ctl.state.getUser('dave'), undefined, 'no user is made for a refused person')
  t.equal((await login(s, await startLogin(s.ctl, 'ok-laptop'), 'alice')).status, 200, 'alice passes both lists')
})

t.test('forged or stale ID tokens are refused: issuer, audience, expiry, nonce', async t => {
  const idp = await startTestIdp()
  t.teardown(idp.close)
  idp.users.set('alice', { email: 'alice@example.com' })
  const cases: Array<[string, (c: Record<string, unknown>) => void, RegExp]> = [
    ['issuer', c => { c.iss = 'https://evil.example' }, /the ID token was issued by https:\/\/evil\.example, not by the configured issuer/],
    ['audience', c => { c.aud = 'another-client' }, /the ID token is meant for "another-client", not for this controller's client id warren/],
    ['expiry', c => { c.exp = Math.floor(Date.now() / 1000) - 3600; c.iat = Math.floor(Date.now() / 1000) - 7200 }, /the ID token has expired/],
    ['nonce', c => { c.nonce = 'some-other-login' }, /nonce does not match this login/]
  ]
  for (const [name, change, message] of cases) {
    await t.test(name, async t => {
      const s = await setup(t, { fetch: idp.tamperingFetch(change) }, idp)
      const page = await login(s, await startLogin(s.ctl), 'alice')
      t.equal(page.status, 403)
      t.match(page.body, message)
      t.match(lastAudit(s.ctl, 'login.refused'), { detail: { reason: 'invalid_id_token' } })
      t.equal(s.ctl.state.listUsers().length, 0, 'nobody was created')
      t.equal(s.ctl.state.listNodes().length, 0, 'no node joined')
    })
  }
})

t.test('a provider whose discovery names another issuer is not used', async t => {
  const idp = await startTestIdp()
  t.teardown(idp.close)
  const elsewhere = idp.issuer.replace('127.0.0.1', 'localhost')
  const s = await setup(t, { issuer: elsewhere }, idp)
  const r = await call(s.ctl, LOGIN_START_PATH, await signedLogin(s.ctl, 'laptop'))
  t.equal(r.status, 502)
  t.equal(r.body.error.code, 'idp_unavailable')
  t.equal(r.body.error.message, `cannot use the identity provider at ${elsewhere}: the provider's discovery document names another issuer than ${elsewhere}; check --oidc-issuer and that the controller can reach it`)
})

t.test('login requests are signed by the machine and cannot be replayed', async t => {
  const s = await setup(t)
  const req = await signedLogin(s.ctl, 'laptop')
  t.equal((await call(s.ctl, LOGIN_START_PATH, req)).status, 200)
  const replay = await call(s.ctl, LOGIN_START_PATH, req)
  t.equal(replay.status, 409, 'the same signed request starts no second login')
  const forged = await call(s.ctl, LOGIN_START_PATH, { ...await signedLogin(s.ctl, 'laptop'), hostname: 'other' })
  t.equal(forged.status, 401)
  t.equal(forged.body.error.code, 'bad_signature')
  const withKey = await call(s.ctl, LOGIN_START_PATH, await signedLogin(s.ctl, 'laptop', newMachine(), 'wrnauth-x'))
  t.equal(withKey.status, 400)
  t.match(withKey.body.error.message, /a login request carries no auth key/)
  const audited = s.ctl.state.listAudit({ limit: 1000 }).length
  const stray = await callback(s.ctl, new URL(`${s.ctl.url}${LOGIN_CALLBACK_PATH}?code=x&state=nope`))
  t.equal(stray.status, 403)
  t.match(stray.body, /this login is unknown or has expired/, 'a callback for no login is refused')
  t.equal((await openLink(s.ctl, `${s.ctl.url}/login/nope`)).status, 404, 'so is a login link that does not exist')
  t.equal(s.ctl.state.listAudit({ limit: 1000 }).length, audited, 'neither fills the audit log')
  const unknown = await call(s.ctl, LOGIN_WAIT_PATH, { waitToken: 'nope' })
  t.equal(unknown.status, 404)
})
