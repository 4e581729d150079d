import t from 'tap'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import type { PolicyInfo } from '@warren/protocol'
import { PROTOCOL_VERSION } from '@warren/protocol'
import { runCli } from '../src/program.js'
import { runWarren, startTestController, failsWith, ok, json } from './cli-harness.js'

t.test('usage: where to send admin commands, versions', async tt => {
  failsWith(tt, await runWarren(['admin', 'users', 'list']), /--state-dir DIR .* or --controller https:\/\/HOST:PORT --api-key KEY/, 'no controller given', 2)
  const r = await runWarren(['admin', 'users', 'list'], { WARREN_STATE_DIR: '/nonexistent/warren' })
  failsWith(tt, r, /cannot reach the controller's admin socket \/nonexistent\/warren\/admin\.sock: no such socket/, 'a state dir without a controller')
  const bad = await runWarren(['admin', '--bogus'])
  tt.equal(bad.code, 2, 'an unknown option is a usage error')
  tt.match(bad.stderr, /^warren: unknown option '--bogus'/)
  tt.equal(bad.stdout, '')
  const v = await runWarren(['version'])
  tt.equal(v.code, 0)
  tt.match(v.stdout, new RegExp(`^warren \\d+\\.\\d+\\.\\d+ \\(protocol ${PROTOCOL_VERSION}\\)\\n$`))
  tt.equal((await runWarren(['--version'])).stdout, v.stdout)
  const help = await runWarren(['admin', '--help'])
  tt.equal(help.code, 0, '--help exits 0')
  tt.match(help.stdout, /^Usage: warren admin \[options\] \[command\]/, 'help goes to the given stdout')
  tt.equal(help.stderr, '')
})

t.test('runCli writes only to the streams it is given and reads their environment', async tt => {
  // Whatever reaches the process's own streams, except tap's report (no TAP line starts like the CLI's output).
  const leaked: string[] = []
  for (const s of [process.stdout, process.stderr]) {
    const write = s.write.bind(s) as (chunk: string | Uint8Array, ...rest: unknown[]) => boolean
    s.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
      if (/^(warren|Usage|error)/m.test(String(chunk))) leaked.push(String(chunk))
      return write(chunk, ...rest)
    }) as typeof s.write
    tt.teardown(() => { s.write = write as typeof s.write })
  }
  const sink = new Writable({ write (_c, _e, done) { done() } })
  const codes: number[] = []
  for (const argv of [['version'], ['--help'], ['admin', '--bogus'], ['admin', 'users', 'list']]) {
    codes.push(await runCli(['node', 'warren', ...argv], { stdout: sink, stderr: sink, env: {} }))
  }
  tt.same(codes, [0, 0, 2, 2], 'version, help, a bad option and a missing controller return their codes')
  tt.same(leaked, [], 'nothing reached the process\'s own stdout or stderr')

  const ctl = await startTestController(tt)
  ok(tt, await runWarren(['admin', 'users', 'create', 'alice'], { WARREN_STATE_DIR: ctl.stateDir }), 'WARREN_STATE_DIR from the given env')
  const [a, b] = await Promise.all([
    runWarren(['admin', 'users', 'list', '--json'], { WARREN_STATE_DIR: ctl.stateDir }),
    runWarren(['admin', 'users', 'list', '--json'], { WARREN_STATE_DIR: join(ctl.stateDir, 'elsewhere') })
  ])
  tt.same(json<Array<{ name: string }>>(a).map(u => u.name), ['alice'], 'two runs at once each see their own env')
  tt.equal(b.code, 1)
  tt.match(b.stderr, /elsewhere\/admin\.sock/)
})

t.test('policy set - reads the given stdin', async tt => {
  const ctl = await startTestController(tt)
  const policy = '{ "acls": [ { "action": "accept", "src": ["*"], "dst": ["*:22"] } ] }\n'
  tt.match(ok(tt, await runWarren(['admin', '--state-dir', ctl.stateDir, 'policy', 'set', '-'], {}, policy), 'policy set -'), /^applied - as policy v1/)
  const info = json<PolicyInfo>(await runWarren(['admin', '--state-dir', ctl.stateDir, 'policy', 'get', '--json']))
  tt.equal(info.text, policy)
})
