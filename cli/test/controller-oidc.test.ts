import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync, chmodSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { oidcOptions } from '../src/commands/controller-oidc.js'

t.test('controller serve reads the OIDC client secret only from a 0600 file', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'warren-oidc-flags-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const secret = join(dir, 'client-secret')
  writeFileSync(secret, 'abc123\n', { mode: 0o644 })
  const flags = { oidcIssuer: 'https://auth.example.com', oidcClientId: 'warren', oidcClientSecretFile: secret }
  await t.rejects(oidcOptions(flags), { code: 'bad_key_file', message: `OIDC client secret file ${secret} has mode 0644, so others on this host may read it; run 'chmod 600 ${secret}' (and check who could have read the secret)` })
  chmodSync(secret, 0o600)
  t.match(await oidcOptions({ ...flags, oidcScopes: 'openid, email,groups', oidcAllowedDomains: 'example.com' }), {
    issuer: 'https://auth.example.com', clientId: 'warren', clientSecret: 'abc123', scopes: ['openid', 'email', 'groups'], allowedDomains: ['example.com']
  })
  t.match(await oidcOptions({ ...flags, oidcRequireAmr: 'mfa, hwk', oidcRecheckInterval: '5m' }), { requireAmr: ['mfa', 'hwk'], recheckIntervalMs: 300_000 })
  await t.rejects(oidcOptions({ ...flags, oidcRecheckInterval: 'soon' }), { code: 'bad_duration', message: /oidc-recheck-interval 'soon' is not a duration/ })
  t.equal(await oidcOptions({}), undefined, 'no flags: no login')
  await t.rejects(oidcOptions({ oidcClientId: 'warren', oidcAllowedGroups: 'eng' }), { message: '--oidc-client-id, --oidc-allowed-groups need --oidc-issuer (the provider\'s issuer URL)' })
  await t.rejects(oidcOptions({ oidcIssuer: 'https://auth.example.com' }), { message: /needs --oidc-client-id and --oidc-client-secret-file/ })
  await t.rejects(oidcOptions({ ...flags, oidcClientSecretFile: join(dir, 'missing') }), { message: /OIDC client secret file .*missing does not exist/ })
})
