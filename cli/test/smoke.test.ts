import t from 'tap'
import { readFileSync, existsSync } from 'node:fs'
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'
import { normalizeFingerprint, PROTOCOL_VERSION, type User } from '@warren/protocol'
import { certificateFingerprint } from '@warren/controller'
import { spawnWarren, serveController, failsWith, ok, json } from './cli-harness.js'

/**
 * The real `warren` executable as separate processes: what in-process runs cannot show
 * (the npm link, exit codes, signals, output reaching a pipe before the process exits).
 */

t.test('npm links the warren executable, as npx warren uses it, and it prints its version', async tt => {
  const link = fileURLToPath(new URL('../../../node_modules/.bin/warren', import.meta.url))
  tt.ok(existsSync(link), `${link} exists (npm ci links it from cli/package.json "bin")`)
  const out = await new Promise<{ code: number | null, stdout: string }>(resolve => {
    execFile(link, ['version'], (err, stdout) => { resolve({ code: err === null ? 0 : (err.code as number | null ?? 1), stdout }) })
  })
  tt.equal(out.code, 0, 'it is executable and runs the built CLI')
  tt.match(out.stdout, new RegExp(`^warren \\d+\\.\\d+\\.\\d+ \\(protocol ${PROTOCOL_VERSION}\\)\\n$`))
})

t.test('controller serve prints its real URL and fingerprint, answers admin commands and stops cleanly', async tt => {
  const ctl = await serveController(tt)
  tt.match(ctl.url, /^https:\/\/127\.0\.0\.1:\d+$/)
  tt.notMatch(ctl.url, /:0$/, 'port 0 is replaced by the real port')
  const certFp = certificateFingerprint(readFileSync(join(ctl.stateDir, 'tls-cert.pem'), 'utf8'))
  tt.equal(normalizeFingerprint(ctl.printedFingerprint), certFp, 'the printed fingerprint is the certificate\'s')
  tt.match(ctl.printedFingerprint, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/, 'shown as colon-separated pairs')
  ok(tt, await spawnWarren(['admin', '--state-dir', ctl.stateDir, 'users', 'create', 'alice']), 'users create over the admin socket')
  tt.same(json<User[]>(await spawnWarren(['admin', 'users', 'list', '--json'], { WARREN_STATE_DIR: ctl.stateDir })).map(u => u.name), ['alice'])
  tt.equal(await ctl.stop('SIGINT'), 0, 'exits 0 on SIGINT')

  const again = await serveController(tt, { stateDir: ctl.stateDir })
  tt.equal(again.printedFingerprint, ctl.printedFingerprint, 'a restart keeps the certificate, so pins stay valid')
  tt.equal(await again.stop('SIGTERM'), 0, 'exits 0 on SIGTERM')
})

t.test('a failing command exits non-zero with one line on stderr', async tt => {
  failsWith(tt, await spawnWarren(['admin', 'users', 'list']), /--state-dir DIR .* or --controller https:\/\/HOST:PORT --api-key KEY/, 'no controller given', 2)
  failsWith(tt, await spawnWarren(['admin', 'users', 'list'], { WARREN_STATE_DIR: '/nonexistent/warren' }), /no such socket/, 'a state dir without a controller', 1)
})
