import t from 'tap'
import { existsSync, writeFileSync, chmodSync } from 'node:fs'
import { join } from 'node:path'
import type { ApiKeyInfo } from '@warren/protocol'
import { runWarren, startTestController, tempDir, ok, failsWith, json } from './cli-harness.js'

t.test('apikeys create --scope relay: a key that links a relay and cannot run admin commands', async tt => {
  const ctl = await startTestController(tt)
  const local = async (...args: string[]) => await runWarren(['admin', '--state-dir', ctl.stateDir, ...args])
  const relay = json<{ key: string } & ApiKeyInfo>(await local('apikeys', 'create', '--scope', 'relay', '--description', 'relay edge-1', '--json'))
  tt.equal(relay.scope, 'relay')
  const shown = ok(tt, await local('apikeys', 'create'), 'an admin key by default')
  tt.match(shown, /scope admin/)
  tt.match(ok(tt, await local('apikeys', 'create', '--scope', 'relay'), 'a relay key in a table'), /scope relay.*\n.*warren relay serve .*--key-file FILE/, 'the hint says where a relay key goes')
  const table = ok(tt, await local('apikeys', 'list'), 'apikeys list')
  tt.match(table, /^ID\s+SCOPE\s+DESCRIPTION/, 'the list has a scope column')
  tt.match(table, new RegExp(`${relay.id}\\s+relay\\s+relay edge-1`))
  const unknown = await local('apikeys', 'create', '--scope', 'root')
  tt.equal(unknown.code, 2, 'an unknown scope is a usage error')
  tt.match(unknown.stderr, /^warren: option '--scope <scope>' argument 'root' is invalid. Allowed choices are admin, relay/)

  const r = await runWarren(['admin', 'users', 'list'], { WARREN_CONTROLLER: ctl.url, WARREN_API_KEY: relay.key })
  failsWith(tt, r, /may only link a relay; use an admin key/, 'a relay key at the admin API')
})

t.test('relay serve takes its key from a 0600 file or WARREN_RELAY_KEY, never the command line', async tt => {
  const ctl = await startTestController(tt)
  const { key } = json<{ key: string }>(await runWarren(['admin', '--state-dir', ctl.stateDir, 'apikeys', 'create', '--scope', 'relay', '--json']))
  const dir = tempDir(tt)
  const stateDir = join(dir, 'relay-state')
  const serve = ['relay', 'serve', '--controller', ctl.url, '--state-dir', stateDir, '--public-host', '127.0.0.1']

  failsWith(tt, await runWarren([...serve, '--api-key', key]), /--api-key is not taken here: a key on the command line shows in 'ps'; put a relay key .* and pass --key-file FILE, or set WARREN_RELAY_KEY/, 'a key on the command line')
  failsWith(tt, await runWarren(serve), /a relay needs its key: .*--key-file FILE, or set WARREN_RELAY_KEY; make one .*'warren admin apikeys create --scope relay'/, 'no key at all')

  const loose = join(dir, 'loose.key')
  writeFileSync(loose, `${key}\n`)
  chmodSync(loose, 0o644)
  const refused = await runWarren([...serve, '--key-file', loose])
  failsWith(tt, refused, new RegExp(`relay key file ${loose} has mode 0644, so others on this host may read it; run 'chmod 600 ${loose}'`), 'a key file others may read')
  tt.notMatch(refused.stderr, key.split('-')[2]!, 'the key is not echoed')

  const garbage = join(dir, 'garbage.key')
  writeFileSync(garbage, 'hunter2-not-a-key\n', { mode: 0o600 })
  const bad = await runWarren([...serve, '--key-file', garbage])
  failsWith(tt, bad, new RegExp(`relay key file ${garbage} does not hold an API key: malformed API key`), 'a file without a key')
  tt.notMatch(bad.stderr, /hunter2/, 'nor is what the file holds')
  failsWith(tt, await runWarren([...serve, '--key-file', dir]), new RegExp(`relay key file ${dir} is not a regular file`), 'a directory')
  failsWith(tt, await runWarren([...serve, '--key-file', join(dir, 'missing.key')]), /relay key file .*missing\.key does not exist/, 'a missing file')

  const good = join(dir, 'relay.key')
  writeFileSync(good, `${key}\n`, { mode: 0o600 })
  failsWith(tt, await runWarren([...serve, '--key-file', good], { WARREN_RELAY_KEY: key }), /both --key-file and WARREN_RELAY_KEY are set/, 'two keys')
  failsWith(tt, await runWarren(serve, { WARREN_RELAY_KEY: 'wrnapi-nonsense' }), /WARREN_RELAY_KEY does not hold an API key/, 'a malformed key in the environment')
  tt.notOk(existsSync(stateDir), 'a refused key changes nothing on the host')
})

t.test('relay serve: the TLS relay\'s flags are checked before anything starts', async tt => {
  const dir = tempDir(tt)
  const stateDir = join(dir, 'relay-state')
  const serve = ['relay', 'serve', '--controller', 'https://127.0.0.1:1', '--state-dir', stateDir, '--public-host', '127.0.0.1']
  failsWith(tt, await runWarren([...serve, '--tls-cert', join(dir, 'c.pem'), '--tls-key', join(dir, 'k.pem')]), /--tls-cert and --tls-key are for the TLS relay; add --tls-listen HOST:PORT to run one/, 'a certificate without a TLS relay')
  failsWith(tt, await runWarren([...serve, '--tls-listen', 'nope']), /--tls-listen 'nope' must be HOST:PORT/, 'a listen address that is none')
  tt.notOk(existsSync(stateDir), 'nothing changed on the host')
})
