import t from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable, Readable } from 'node:stream'
import { pino } from 'pino'
import { LOGIN_CALLBACK_PATH } from '@warren/protocol'
import { startController } from '@warren/controller'
import { startDaemon } from '@warren/node'
import { createFakeDataPlane } from '@warren/node/testing'
import { createLocalClient } from '@warren/sdk'
import { runCli } from '@warren/cli'
import { startTestIdp } from '../src/oidc-idp.js'
import { waitFor } from '../src/process.js'

// `warren up --controller URL` without an auth key, end to end in this process: the CLI
// prints the login URL the daemon got, a person logs in at a real OpenID provider, and
// the node comes up as that person's; when an admin expires it, status says to log in
// again, and `warren up` does it the same way. The data plane is the fake one.

/** Run is one CLI run whose output can be read while it runs. */
interface Run { code: Promise<number>, stdout: () => string }

function warren (args: string[]): Run {
  let out = ''
  const sink = (add: (s: string) => void): Writable => new Writable({ write (c: Buffer, _e, cb) { add(c.toString('utf8')); cb() } })
  const code = runCli(['node', 'warren', ...args], { stdout: sink(s => { out += s }), stderr: sink(s => { out += s }), stdin: Readable.from([]), env: {} })
  return { code, stdout: () => out }
}

t.test('a node joins by logging in, and logs in again after an admin expired it', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'warren-oidc-node-'))
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

  /** logIn plays the person: open the URL the CLI printed, log in at the provider, come back. */
  const logIn = async (run: Run): Promise<string> => {
    const url = await waitFor(() => /log in at:\s+(\S+)/.exec(run.stdout())?.[1], { timeoutMs: 30_000, message: 'the CLI printing a login URL' })
    const link = await ctl.app.inject({ method: 'GET', url: new URL(url).pathname })
    t.equal(link.statusCode, 302, 'the printed URL leads to the provider')
    const back = await idp.browse(link.headers.location as string, 'alice')
    const page = await ctl.app.inject({ method: 'GET', url: back.pathname + back.search })
    t.equal(page.statusCode, 200, 'the provider sent the person back and the login completed')
    return url
  }

  const up = warren(['up', '--socket', socket, '--controller', ctl.url, '--fingerprint', ctl.fingerprint, '--hostname', 'laptop'])
  const pending = await waitFor(async () => { const st = await createLocalClient({ socketPath: socket }).status(); return st.authUrl !== undefined ? st : undefined }, { timeoutMs: 30_000, message: 'status showing the login URL' })
  t.equal(pending.backendState, 'NeedsLogin', 'while the person logs in, the daemon needs a login')
  const first = await logIn(up)
  t.equal(pending.authUrl, first, 'status and the CLI show the same URL')
  t.equal(await up.code, 0, up.stdout())
  t.match(up.stdout(), /up: laptop\.warren\.internal \(100\.64\.\d+\.\d+/, 'warren up finished once the person logged in')
  t.equal(ctl.state.getNode('laptop')?.user, 'alice', 'the node is the person\'s')

  const status = warren(['status', '--socket', socket])
  t.equal(await status.code, 0)
  t.match(status.stdout(), /key: expires in 1(79|80)d/, 'status says when the key expires')

  await ctl.state.expireNode('laptop', 'local-admin')
  const expired = await waitFor(async () => { const st = await createLocalClient({ socketPath: socket }).status(); return st.backendState === 'NeedsLogin' ? st : undefined }, { timeoutMs: 30_000, message: 'the daemon hearing that its key expired' })
  t.match(expired.health.join('\n'), /node 'laptop' has expired: log in again with 'warren up'/, 'status says to log in again')
  const status2 = warren(['status', '--socket', socket])
  await status2.code
  t.match(status2.stdout(), /state: NeedsLogin.*\n(.*\n)*health: .*has expired: log in again with 'warren up'/)

  const again = warren(['up', '--socket', socket])
  const second = await logIn(again)
  t.not(second, first, 'a new login link')
  t.equal(await again.code, 0, again.stdout())
  t.match(again.stdout(), /up: laptop\.warren\.internal/)
  t.equal(ctl.state.getNode('laptop')?.status, 'active', 'the node\'s key is fresh again')
  t.equal(ctl.state.listNodes().length, 1, 'the same node, not a new one')
})
