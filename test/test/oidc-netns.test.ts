import t from 'tap'
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LOGIN_CALLBACK_PATH } from '@warren/protocol'
import { netnsSkipReason, waitFor } from '../src/index.js'
import { createMesh, canConnect, flowSamples, FLOW_ARGV } from '../src/mesh.js'
import { IDP_TOOL_ARGV, TEST_CLIENT_ID, TEST_CLIENT_SECRET } from '../src/oidc-idp.js'

/**
 * Login end to end with real processes in network namespaces: the controller (run with
 * --oidc-*) and a test OpenID provider in the controller's namespace, a tagged server
 * joined with an auth key, and a laptop whose `warren up` prints a login URL that a
 * person (the provider tool) completes. The laptop is then alice's, and the policy that
 * names alice@example.com and her group at the provider decides what it reaches; taking
 * her out of that group at the provider cuts a live stream at the next check.
 */
const skip = netnsSkipReason()
const IDP_PORT = 9000

t.test('a node joins as the person who logged in, and the policy applies to that person', { skip, timeout: 580_000 }, async t => {
  const secrets = mkdtempSync(join(tmpdir(), 'warren-oidc-secret-'))
  t.teardown(() => { rmSync(secrets, { recursive: true, force: true }) })
  const secretFile = join(secrets, 'client-secret')
  writeFileSync(secretFile, `${TEST_CLIENT_SECRET}\n`, { mode: 0o600 })
  const groupsFile = join(secrets, 'alice-groups')
  writeFileSync(groupsFile, 'engineering')
  const mesh = await createMesh(t, {
    hosts: ['server', 'laptop'],
    // The provider listens on the controller namespace's own loopback.
    controllerArgs: ['--oidc-issuer', `http://127.0.0.1:${IDP_PORT}`, '--oidc-client-id', TEST_CLIENT_ID, '--oidc-client-secret-file', secretFile,
      '--oidc-scopes', 'openid,email,profile,groups,offline_access', '--oidc-recheck-interval', '0']
  })
  const idp = mesh.controllerHost.spawn([...IDP_TOOL_ARGV, 'serve', String(IDP_PORT), `${mesh.url}${LOGIN_CALLBACK_PATH}`, 'alice', 'alice@example.com', groupsFile])
  await idp.waitForLine(/^issuer /, 60_000)

  await mesh.admin('users', 'create', 'ops')
  const policy = join(mesh.dir, 'policy.hujson')
  writeFileSync(policy, JSON.stringify({
    groups: { 'group:eng': ['idp:engineering'] },
    tagOwners: { 'tag:server': ['ops@'] },
    acls: [
      { action: 'accept', src: ['alice@example.com'], dst: ['tag:server:80'] },
      { action: 'accept', src: ['group:eng'], dst: ['tag:server:8080'] }
    ]
  }))
  await mesh.admin('policy', 'set', policy, '-m', 'alice reaches the server on 80, engineering on 8080')
  const key = JSON.parse(await mesh.admin('keys', 'create', '--user', 'ops', '--tags', 'tag:server', '--preapproved', '--json')).key as string
  const server = await mesh.join('server', { authKey: key })

  const laptop = await mesh.join('laptop', {
    logIn: async loginUrl => {
      const r = await mesh.controllerHost.exec([...IDP_TOOL_ARGV, 'login', loginUrl, 'alice'], { allowFail: true, env: { NODE_TLS_REJECT_UNAUTHORIZED: '0' } })
      t.match(r.stdout, /^page 200 Logged in as alice@example\.com\. Node laptop /m, `the person logged in: ${r.stdout}${r.stderr}`)
    }
  })
  const self = (await laptop.status()).self!
  t.equal(self.user, 'alice', 'the laptop is the person\'s node')
  t.match(await mesh.admin('users', 'list'), /alice\s+alice@example\.com/, 'the user was made at the first login')
  t.match(await mesh.admin('audit'), /login\.ok/, 'the login is in the audit log')

  const flow = server.host.spawn([...FLOW_ARGV, 'serve', '22,80,8080'])
  await flow.waitForLine(/^listening$/, 60_000)
  await waitFor(async () => await canConnect(laptop.host, server.ipv4, 80), { timeoutMs: 120_000, message: 'laptop -> server:80, allowed for alice@example.com' })
  t.ok(await canConnect(laptop.host, server.ipv4, 80, 10_000), 'alice\'s laptop reaches server:80')
  t.notOk(await canConnect(laptop.host, server.ipv4, 22), 'but not server:22')
  t.notOk(await canConnect(server.host, laptop.ipv4, 80), 'and the server does not reach the laptop')

  // Her group at the provider gives her 8080; out of the group, the check cuts a live stream.
  await waitFor(async () => await canConnect(laptop.host, server.ipv4, 8080), { timeoutMs: 120_000, message: 'laptop -> server:8080, allowed for idp:engineering' })
  const stream = laptop.host.spawn([...FLOW_ARGV, 'send', server.ipv4, '8080'])
  t.teardown(async () => { await stream.kill() })
  await stream.waitForLine(/^connected$/, 60_000)
  const received = (): number => flowSamples(flow.output()).filter(s => s.port === 8080).at(-1)?.bytes ?? 0
  await waitFor(() => received() > 20_000, { timeoutMs: 120_000, message: 'the stream to 8080 carrying data' })
  t.match(await mesh.admin('users', 'recheck', 'alice'), /^alice: unchanged \(groups engineering\)/m, 'a check with nothing changed at the provider')

  writeFileSync(groupsFile, 'marketing')
  t.match(await mesh.admin('users', 'recheck', 'alice'), /^alice: changed \(groups marketing\)/m, 'the check sees her new groups')
  const lastRxAt = (): number => flowSamples(flow.output()).filter(s => s.port === 8080).at(-1)?.at ?? 0
  await waitFor(() => Date.now() - lastRxAt() > 1000, { timeoutMs: 120_000, intervalMs: 100, message: 'the stream to 8080 to stop' })
  const cutAt = lastRxAt()
  t.notOk(await canConnect(laptop.host, server.ipv4, 8080), 'a new connection to 8080 is denied')
  t.ok(await canConnect(laptop.host, server.ipv4, 80, 10_000), 'what she has as herself (80) stays')
  t.equal(lastRxAt(), cutAt, 'the stream to 8080 carried nothing more')
  t.match(await mesh.admin('audit'), /idp\.recheck/, 'the change is in the audit log')
})
