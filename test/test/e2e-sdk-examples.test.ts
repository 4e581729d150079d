import t from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { netnsSkipReason, waitFor, execCommand, type ExecResult } from '../src/index.js'
import { createMesh, type MeshNode } from '../src/mesh.js'
import { REPO_ROOT } from '../src/source-imports.js'
import { createAdminClient, createPolicyAdmin } from '@warren/sdk'

/**
 * The SDK's examples run as a user would run them, on a real mesh in network namespaces:
 * setup-mesh makes the user, the policy and the auth keys through the controller's admin
 * socket (no CLI); three daemons join with those keys; greeter-service serves on one node
 * and greeter-client calls it by name from the others. The service greets alice's laptop
 * by user and refuses a CI runner whose tag it does not trust, with no login of its own.
 */
const skip = netnsSkipReason()

/** example runs a compiled example with this node binary. */
const example = (name: string): string[] => [process.execPath, join(REPO_ROOT, 'sdk', 'examples', 'dist', `${name}.js`)]

t.test('the SDK examples work as written', { skip, timeout: 580_000 }, async t => {
  const mesh = await createMesh(t, { hosts: ['greeter', 'laptop', 'ci'] })
  const setup = async (...args: string[]): Promise<ExecResult> =>
    await execCommand([...example('setup-mesh'), '--state-dir', mesh.controllerStateDir, ...args], { allowFail: true })

  const keys = { greeter: '', laptop: '', ci: '' }
  await t.test('setup-mesh makes the user, the policy and auth keys with the admin client', async t => {
    const first = await setup('--user', 'alice', '--email', 'alice@example.com', '--tags', 'tag:greeter')
    t.equal(first.exitCode, 0, `it succeeds: ${first.stderr}`)
    t.match(first.stderr, /created user alice/)
    t.match(first.stderr, /policy is now version 1/)
    keys.greeter = first.stdout.trim()
    t.match(keys.greeter, /^\S+$/, 'stdout is the key alone')
    // Again: the user and the policy are kept, and each run makes a new key.
    const second = await setup('--user', 'alice')
    t.equal(second.exitCode, 0, `run again, it succeeds: ${second.stderr}`)
    t.match(second.stderr, /user alice exists/)
    t.match(second.stderr, /policy unchanged \(version 1\)/)
    const third = await setup('--user', 'alice', '--tags', 'tag:ci')
    t.equal(third.exitCode, 0, third.stderr)
    keys.laptop = second.stdout.trim()
    keys.ci = third.stdout.trim()
    t.equal(new Set(Object.values(keys)).size, 3, 'three different keys')
    t.match(await mesh.admin('users', 'list'), /alice/, 'the CLI sees the user setup-mesh made')
  })

  await t.test('setup-mesh refuses a policy that fails its own tests and changes nothing', async t => {
    const file = join(mesh.dir, 'bad.hujson')
    writeFileSync(file, `{
  "tagOwners": { "tag:greeter": ["alice@"], "tag:ci": ["alice@"] },
  "acls": [],
  "tests": [ { "src": "alice@", "accept": ["tag:greeter:8080"] } ],
}
`)
    const r = await setup('--user', 'alice', '--policy', file)
    t.equal(r.exitCode, 1, 'it fails')
    t.match(r.stderr, /setup-mesh: policy_tests_failed: .*tag:greeter:8080/s, `it says which test failed: ${r.stderr}`)
    t.equal(r.stdout, '', 'no key is printed')
    const admin = createAdminClient({ stateDir: mesh.controllerStateDir })
    t.teardown(() => { admin.close() })
    t.equal((await createPolicyAdmin(admin).get()).version, 1, 'the greeter policy is still in force')
  })

  const greeter = await mesh.join('greeter', { authKey: keys.greeter })
  const laptop = await mesh.join('laptop', { authKey: keys.laptop })
  const ci = await mesh.join('ci', { authKey: keys.ci })
  t.match(await mesh.admin('nodes', 'list'), /ci/, 'all three joined')

  // The service trusts tag:greeter only (tagged peers of its own kind): tag:ci is refused.
  const service = greeter.host.spawn([...example('greeter-service'), '--port', '8080', '--trust', 'tag:greeter'], { env: { WARREN_SOCKET: greeter.socket } })
  t.teardown(async () => { await service.kill() })
  await service.waitForLine(/^greeter listening on /, 60_000)

  const client = async (from: MeshNode): Promise<ExecResult> =>
    await from.host.exec([...example('greeter-client'), 'greeter:8080'], { allowFail: true, timeoutMs: 60_000, env: { WARREN_SOCKET: from.socket } })

  await t.test('the client on alice\'s laptop is greeted by user, over fetch and http.get', async t => {
    // The laptop learns the greeter as a peer once the controller has sent the new map.
    const r = await waitFor(async () => { const r = await client(laptop); return r.exitCode === 0 ? r : undefined },
      { timeoutMs: 120_000, message: 'greeter-client on laptop gets 200' })
    t.match(r.stdout, /^fetch: 200 Hello alice \(node laptop\)!$/m, `fetch: ${r.stdout}`)
    t.match(r.stdout, /^http\.get: 200 Hello alice \(node laptop\)!$/m, `http.get: ${r.stdout}`)
    t.match(service.output(), `greeter listening on ${greeter.ipv4}:8080 and [${greeter.ipv6.replace(/\/.*$/, '')}]:8080`, 'the service listens on the mesh addresses only')
  })

  await t.test('a CI runner with an untrusted tag reaches the service but gets 403', async t => {
    const r = await waitFor(async () => { const r = await client(ci); return r.stdout.includes('fetch: ') ? r : undefined },
      { timeoutMs: 120_000, message: 'greeter-client on ci gets an answer' })
    t.equal(r.exitCode, 1, 'the client exits 1')
    t.match(r.stdout, /^fetch: 403 Forbidden: tag:ci \(node ci\) carries tag:ci, which this service does not trust$/m, r.stdout)
    t.match(r.stdout, /^http\.get: 403 Forbidden/m, r.stdout)
  })

  await t.test('the service\'s trust list decides: trusting tag:ci, it greets the runner', async t => {
    await service.kill()
    const trusting = greeter.host.spawn([...example('greeter-service'), '--trust', 'tag:greeter', '--trust', 'tag:ci'], { env: { WARREN_SOCKET: greeter.socket } })
    t.teardown(async () => { await trusting.kill() })
    await trusting.waitForLine(/trusted tags: tag:greeter, tag:ci$/, 60_000)
    const r = await client(ci)
    t.equal(r.exitCode, 0, `the client succeeds: ${r.stdout}${r.stderr}`)
    t.match(r.stdout, /^fetch: 200 Hello tag:ci \(node ci\)!$/m, 'a tagged caller is named by its tags')
    t.match(r.stdout, /^http\.get: 200 Hello tag:ci \(node ci\)!$/m)
  })

  await t.test('the client names a mesh failure by its code', async t => {
    const r = await laptop.host.exec([...example('greeter-client'), 'nosuch:8080'], { allowFail: true, timeoutMs: 60_000, env: { WARREN_SOCKET: laptop.socket } })
    t.equal(r.exitCode, 1)
    t.match(r.stderr, /greeter-client: ENOPEER: no node 'nosuch'/)
  })
})
