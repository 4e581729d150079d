import t from 'tap'
import { parseCredential, formatCredential, type User, type ApiKeyInfo, type AuditEntry } from '@warren/protocol'
import { runWarren, startTestController, ok, failsWith, json, type CliResult } from './cli-harness.js'

t.test('remote admin with an API key over pinned HTTPS', async tt => {
  const ctl = await startTestController(tt)
  const local = async (...args: string[]): Promise<CliResult> => await runWarren(['admin', '--state-dir', ctl.stateDir, ...args])
  const created = json<{ key: string, id: string }>(await local('apikeys', 'create', '--description', 'ci', '--expiry', '30d', '--json'))
  tt.match(created.key, /^wrnapi-/, 'the secret is in `key`')
  const remoteEnv = { WARREN_CONTROLLER: ctl.url, WARREN_API_KEY: created.key }
  const remote = async (args: string[], env: Record<string, string> = remoteEnv): Promise<CliResult> => await runWarren(['admin', ...args], env)

  tt.match(ok(tt, await remote(['users', 'create', 'carol']), 'users create over HTTPS (env)'), /created user carol/)
  const flags = ['--controller', ctl.url, '--api-key', created.key]
  tt.match(ok(tt, await remote(['keys', 'create', '--user', 'carol']), 'keys create over HTTPS'), `warren up --controller ${ctl.url} --auth-key KEY`, 'the join hint names the controller')
  ok(tt, await remote([...flags, 'users', 'list'], { WARREN_STATE_DIR: '/nonexistent' }), 'a --controller flag beats WARREN_STATE_DIR')
  tt.same(json<User[]>(await remote([...flags, 'users', 'list', '--json'], {})).map(u => u.name), ['carol'], 'users list over HTTPS (flags)')
  ok(tt, await remote([...flags, '--fingerprint', ctl.displayFingerprint, 'users', 'list'], {}), 'an explicit matching --fingerprint')
  const audit = json<AuditEntry[]>(await local('audit', '--json'))
  tt.match(audit.find(e => e.action === 'user.create')?.actor, new RegExp(created.id), 'the audit log names the API key')

  const apikeys = json<ApiKeyInfo[]>(await remote(['apikeys', 'list', '--json']))
  tt.equal(apikeys.find(k => k.id === created.id)?.description, 'ci')

  const auditBefore = ok(tt, await local('audit', '--json'), 'audit')
  const wrongFp = 'ab'.repeat(32)
  const mismatch = /fingerprint_mismatch|presented a certificate with fingerprint .* but AB:AB.* was expected.*--fingerprint/
  failsWith(tt, await remote([...flags, '--fingerprint', wrongFp, 'users', 'create', 'mallory'], {}), mismatch, 'a wrong --fingerprint')
  const parsed = parseCredential(created.key, 'api')
  const wrongPinKey = formatCredential({ ...parsed, fingerprint: wrongFp })
  failsWith(tt, await remote(['users', 'create', 'mallory'], { WARREN_CONTROLLER: ctl.url, WARREN_API_KEY: wrongPinKey }), mismatch, 'an API key with a wrong pin')
  tt.equal(ok(tt, await local('audit', '--json'), 'audit'), auditBefore, 'nothing changed')
  tt.same(json<User[]>(await local('users', 'list', '--json')).map(u => u.name), ['carol'], 'mallory was not created')

  failsWith(tt, await remote([...flags.slice(0, 2), 'users', 'list'], {}), /--api-key/, 'a controller without a key', 2)
  const unpinned = formatCredential({ kind: 'api', id: parsed.id, secret: parsed.secret })
  failsWith(tt, await remote(['--controller', ctl.url, '--api-key', unpinned, 'users', 'list'], {}), /not trust.*--fingerprint/, 'a self-signed controller without any pin')

  ok(tt, await local('apikeys', 'expire', created.id), 'apikeys expire')
  failsWith(tt, await remote(['users', 'list']), /expired|revoked/, 'an expired API key')
  failsWith(tt, await remote(['users', 'list'], { WARREN_CONTROLLER: ctl.url, WARREN_API_KEY: 'wrnapi-nonsense' }), /malformed API key/, 'a malformed API key')
})
