import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable, Readable } from 'node:stream'
import { pino } from 'pino'
import { LOGIN_CALLBACK_PATH } from '@warren/protocol'
import { startController, type RunningController } from '@warren/controller'
import { startDaemon } from '@warren/node'
import { createFakeDataPlane } from '@warren/node/testing'
import { runCli } from '@warren/cli'
import type { TestLike } from './netns.js'
import { startTestIdp, type TestIdp } from './oidc-idp.js'
import { waitFor } from './process.js'

/** CliRun is one CLI run in this process whose output can be read while it runs. */
export interface CliRun { code: Promise<number>, output: () => string }

/**
 * OidcRig is a login setup in one process: a test OpenID provider with the user `alice`
 * (alice@example.com, group engineering), a controller that logs in there, and a daemon
 * with the fake data plane that the CLI talks to.
 */
export interface OidcRig {
  idp: TestIdp
  ctl: RunningController
  socket: string
  /** warren runs the CLI with these arguments (stdout and stderr together) */
  warren: (args: string[]) => CliRun
  /** loginUrl waits until `run` has printed a login URL and gives it */
  loginUrl: (run: CliRun) => Promise<string>
}

export async function startOidcRig (t: TestLike): Promise<OidcRig> {
  const dir = mkdtempSync(join(tmpdir(), 'warren-oidc-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const idp = await startTestIdp()
  t.teardown(idp.close)
  idp.users.set('alice', { email: 'alice@example.com', name: 'Alice', groups: ['engineering'] })
  const ctl = await startController({
    stateDir: join(dir, 'ctl'), listen: '127.0.0.1:0', logger: false, rateLimit: false,
    oidc: { issuer: idp.issuer, clientId: idp.clientId, clientSecret: idp.clientSecret }
  })
  t.teardown(ctl.close)
  idp.allow(`${ctl.url}${LOGIN_CALLBACK_PATH}`)
  const socket = join(dir, 'warrend.sock')
  const daemon = await startDaemon({
    stateDir: join(dir, 'node'), socketPath: socket, interfaceName: 'wgoidc0', wireguardMode: 'userspace',
    logger: pino({ level: 'silent' }), dataPlane: () => createFakeDataPlane(), endpoints: port => [`127.0.0.1:${port}`]
  })
  t.teardown(daemon.close)
  return {
    idp,
    ctl,
    socket,
    warren (args) {
      let out = ''
      const sink = new Writable({ write (c: Buffer, _e, cb) { out += c.toString('utf8'); cb() } })
      const code = runCli(['node', 'warren', ...args], { stdout: sink, stderr: sink, stdin: Readable.from([]), env: {} })
      return { code, output: () => out }
    },
    loginUrl: async run => await waitFor(() => /log in at:\s+(\S+)/.exec(run.output())?.[1], { timeoutMs: 30_000, message: 'the CLI printing a login URL' })
  }
}
