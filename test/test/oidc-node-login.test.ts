import t from 'tap'
import { createLocalClient } from '@warren/sdk'
import { startOidcRig, type CliRun } from '../src/oidc-rig.js'
import { waitFor } from '../src/process.js'

// `warren up --controller URL` without an auth key, end to end in this process: the CLI
// prints the login URL the daemon got, a person logs in at a real OpenID provider, and
// the node comes up as that person's; when an admin expires it, status says to log in
// again, and `warren up` does it the same way. The data plane is the fake one.

t.test('a node joins by logging in, and logs in again after an admin expired it', async t => {
  const { idp, ctl, socket, warren, loginUrl } = await startOidcRig(t)

  /** logIn plays the person: open the URL the CLI printed, log in at the provider, come back. */
  const logIn = async (run: CliRun): Promise<string> => {
    const url = await loginUrl(run)
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
  t.equal(await up.code, 0, up.output())
  t.match(up.output(), /up: laptop\.warren\.internal \(100\.64\.\d+\.\d+/, 'warren up finished once the person logged in')
  t.equal(ctl.state.getNode('laptop')?.user, 'alice', 'the node is the person\'s')

  const status = warren(['status', '--socket', socket])
  t.equal(await status.code, 0)
  t.match(status.output(), /key: expires in 1(79|80)d/, 'status says when the key expires')

  await ctl.state.expireNode('laptop', 'local-admin')
  const expired = await waitFor(async () => { const st = await createLocalClient({ socketPath: socket }).status(); return st.backendState === 'NeedsLogin' ? st : undefined }, { timeoutMs: 30_000, message: 'the daemon hearing that its key expired' })
  t.match(expired.health.join('\n'), /node 'laptop' has expired: log in again with 'warren up'/, 'status says to log in again')
  const status2 = warren(['status', '--socket', socket])
  await status2.code
  t.match(status2.output(), /state: NeedsLogin.*\n(.*\n)*health: .*has expired: log in again with 'warren up'/)

  const again = warren(['up', '--socket', socket])
  const second = await logIn(again)
  t.not(second, first, 'a new login link')
  t.equal(await again.code, 0, again.output())
  t.match(again.output(), /up: laptop\.warren\.internal/)
  t.equal(ctl.state.getNode('laptop')?.status, 'active', 'the node\'s key is fresh again')
  t.equal(ctl.state.listNodes().length, 1, 'the same node, not a new one')
})
