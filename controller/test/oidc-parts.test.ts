import t from 'tap'
import { readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { checkOidcOptions, identityFromClaims, checkAllowed, openTokenVault, TOKEN_KEY_FILE, type SealedToken } from '../src/oidc/index.js'
import { tempDir } from './helpers.js'

const base = { issuer: 'https://auth.example.com/realms/main', clientId: 'warren', clientSecret: 's3cret' }

t.test('checkOidcOptions refuses settings that cannot work, naming the flag', async t => {
  const refused: Array<[object, RegExp, string]> = [
    [{ issuer: 'not a url' }, /--oidc-issuer 'not a url' is not a URL/, 'oidc-issuer'],
    [{ issuer: 'http://auth.example.com' }, /must be an https URL \(plain http only on loopback/, 'oidc-issuer'],
    [{ clientId: ' ' }, /--oidc-client-id must not be empty/, 'oidc-client-id'],
    [{ clientSecret: '' }, /client secret is empty/, 'oidc-client-secret-file'],
    [{ scopes: ['email', 'profile'] }, /--oidc-scopes 'email,profile' must include openid/, 'oidc-scopes'],
    [{ redirectUrl: 'callback' }, /--oidc-redirect-url 'callback' is not a URL/, 'oidc-redirect-url']
  ]
  for (const [change, message, field] of refused) {
    t.throws(() => checkOidcOptions({ ...base, ...change }), { message, field })
  }
  const s = checkOidcOptions({ ...base, issuer: 'http://127.0.0.1:9000', allowedDomains: ['@Example.COM'], allowedUsers: ['Alice@Example.com'] })
  t.same(s.scopes, ['openid', 'email', 'profile'], 'default scopes')
  t.equal(s.groupsClaim, 'groups')
  t.same(s.allowedDomains, ['example.com'], 'domains compare in lower case, without @')
  t.same(s.allowedUsers, ['alice@example.com'])
})

t.test('identityFromClaims trusts verified emails only and reads groups from the token or userinfo', async t => {
  const id = identityFromClaims({ iss: 'https://idp', sub: 'u1', email: 'a@example.com', email_verified: false }, { groups: 'admins', name: 'A' }, 'groups')
  t.same(id, { issuer: 'https://idp', subject: 'u1', name: 'A', groups: ['admins'] }, 'an unverified email is dropped; a single group is a list')
  const id2 = identityFromClaims({ iss: 'https://idp', sub: 'u2', email: 'b@example.com', roles: ['x', 3, 'y'] }, undefined, 'roles')
  t.same(id2, { issuer: 'https://idp', subject: 'u2', email: 'b@example.com', groups: ['x', 'y'] }, 'email without email_verified is taken; another groups claim')
})

t.test('checkAllowed needs every allow list that is set', async t => {
  const id = { issuer: 'https://idp', subject: 'u1', email: 'a@example.com', groups: ['eng'] }
  const lists = { allowedUsers: [] as string[], allowedDomains: [] as string[], allowedGroups: [] as string[], groupsClaim: 'groups' }
  t.doesNotThrow(() => { checkAllowed(id, lists) }, 'no lists: anyone the provider vouches for')
  t.doesNotThrow(() => { checkAllowed(id, { ...lists, allowedUsers: ['u1'] }) }, 'a subject in allowed users')
  t.throws(() => { checkAllowed(id, { ...lists, allowedUsers: ['b@example.com'] }) }, { code: 'user_not_allowed', status: 403, message: /a@example\.com is not among the users allowed/ })
  t.throws(() => { checkAllowed(id, { ...lists, allowedDomains: ['example.com'], allowedGroups: ['ops'] }) }, { code: 'group_not_allowed', message: /a@example\.com is in eng, but only members of ops may log in/ })
})

t.test('refresh tokens are sealed at rest, under a 0600 key of their own', async t => {
  const dir = await tempDir(t)
  const vault = await openTokenVault(dir)
  const keyFile = join(dir, TOKEN_KEY_FILE)
  t.equal(statSync(keyFile).mode & 0o777, 0o600, 'the key file is 0600')
  const alice = { issuer: 'https://idp', subject: 'alice' }
  const op = vault.storeOp(alice, 'refresh-token-of-alice', new Date().toISOString())
  if (op.type !== 'raw-put') throw new Error('expected a raw put')
  t.notMatch(JSON.stringify(op.value), /refresh-token-of-alice/, 'the stored value does not hold the token')
  t.equal(vault.open(alice, op.value as SealedToken), 'refresh-token-of-alice', 'the vault opens it')
  t.throws(() => vault.open({ issuer: 'https://idp', subject: 'mallory' }, op.value as SealedToken), 'a token sealed for one identity does not open for another')
  const again = await openTokenVault(dir)
  t.equal(again.open(alice, op.value as SealedToken), 'refresh-token-of-alice', 'the key survives a restart')
  t.equal(readFileSync(keyFile, 'utf8').trim().length, 64)
})
