import t from 'tap'
import { stat, copyFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Server } from 'node:https'
import { X509Certificate } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { parseCredential, ErrorBody, Obj } from '@warren/protocol'
import { Type } from '@sinclair/typebox'
import { startController, parseListen } from '../src/server.js'
import { CERT_FILE, KEY_FILE } from '../src/tls.js'
import { tempDir, pinnedRequest, socketRequest, registration } from './helpers.js'

const mode = async (p: string): Promise<number> => (await stat(p)).mode & 0o777

t.test('the controller serves TLS with a kept self-signed certificate and an admin socket', async t => {
  const dir = await tempDir(t)
  const c = await startController({ stateDir: dir, listen: '127.0.0.1:0', logger: false })
  t.teardown(c.close)
  t.match(c.url, /^https:\/\/127\.0\.0\.1:\d+$/)
  t.match(c.fingerprint, /^[0-9a-f]{64}$/)
  t.equal(c.displayFingerprint, c.fingerprint.toUpperCase().match(/../g)!.join(':'))

  const info = await pinnedRequest(c.url, c.fingerprint, 'GET', '/v1/machine/key')
  t.equal(info.status, 200)
  t.equal(info.fingerprint, c.displayFingerprint, 'the served certificate has the printed fingerprint')
  await t.rejects(pinnedRequest(c.url, 'cd'.repeat(32), 'GET', '/v1/machine/key'), /does not match the pinned/, 'a wrong pin is refused')

  const cert = new X509Certificate(await readFile(join(dir, CERT_FILE)))
  t.match(cert.subjectAltName, /DNS:localhost/)
  t.match(cert.subjectAltName, /IP Address:127\.0\.0\.1/)
  t.equal(cert.publicKey.asymmetricKeyType, 'ec')
  t.ok(Date.parse(cert.validTo) > Date.now() + 9 * 365 * 86_400_000, 'valid for 10 years')
  t.equal(await mode(join(dir, KEY_FILE)), 0o600, 'TLS key is 0600')
  t.equal(await mode(join(dir, 'controller.key')), 0o600, 'controller WireGuard key is 0600')
  t.equal(await mode(c.adminSocket), 0o600, 'admin socket is 0600')
  t.equal(await mode(dir), 0o700, 'state dir is 0700')

  const remote = await pinnedRequest(c.url, c.fingerprint, 'GET', '/v1/nodes')
  t.equal(remote.status, 401, 'remote admin needs an API key')
  const made = await socketRequest(c.adminSocket, 'POST', '/v1/apikeys', { description: 'test' })
  t.equal(made.status, 201, 'the local socket needs no key')
  t.equal(parseCredential(made.body.key, 'api').fingerprint, c.fingerprint, 'the API key pins the certificate')
  const auth = { authorization: `Bearer ${made.body.key as string}` }
  t.equal((await pinnedRequest(c.url, c.fingerprint, 'POST', '/v1/users', { name: 'alice' }, auth)).status, 201)
  const users = await socketRequest(c.adminSocket, 'GET', '/v1/users')
  t.same(users.body.users.map((u: { name: string }) => u.name), ['alice'])
  t.notOk((await socketRequest(c.adminSocket, 'GET', '/v1/machine/key')).status === 200, 'machine routes are not on the socket')

  const metrics = await pinnedRequest(c.url, c.fingerprint, 'GET', '/metrics')
  t.equal(metrics.status, 404, 'the public server does not serve metrics')
  t.equal(metrics.body.error.code, 'not_found')
  t.equal(c.metricsUrl, undefined, 'no metrics listener unless asked for')

  const second = startController({ stateDir: dir, listen: '127.0.0.1:0', logger: false })
  await t.rejects(second, { code: 'state_dir_locked' }, 'a second controller on the same state dir is refused')

  await c.close()
  const again = await startController({ stateDir: dir, listen: '127.0.0.1:0', logger: false })
  t.teardown(again.close)
  t.equal(again.fingerprint, c.fingerprint, 'a restart keeps the certificate')
  t.equal(again.state.controllerKey.publicKey, c.state.controllerKey.publicKey, 'and the controller key')
  t.same((await socketRequest(again.adminSocket, 'GET', '/v1/users')).body.users.map((u: { name: string }) => u.name), ['alice'])
})

t.test('operator certificate files are used as given', async t => {
  const first = await tempDir(t)
  const c = await startController({ stateDir: first, listen: '127.0.0.1:0', logger: false })
  await c.close()
  const files = await tempDir(t)
  await copyFile(join(first, CERT_FILE), join(files, 'c.pem'))
  await copyFile(join(first, KEY_FILE), join(files, 'k.pem'))
  const dir = await tempDir(t)
  const d = await startController({ stateDir: dir, listen: '127.0.0.1:0', logger: false, tlsCert: join(files, 'c.pem'), tlsKey: join(files, 'k.pem') })
  t.teardown(d.close)
  t.equal(d.fingerprint, c.fingerprint)
  t.equal((await pinnedRequest(d.url, d.fingerprint, 'GET', '/v1/machine/key')).status, 200)
  await t.rejects(startController({ stateDir: await tempDir(t), listen: '127.0.0.1:0', logger: false, tlsCert: join(files, 'c.pem') }), { code: 'bad_tls_options' })
  await t.rejects(startController({ stateDir: await tempDir(t), listen: '127.0.0.1:0', logger: false, tlsCert: join(files, 'nope.pem'), tlsKey: join(files, 'k.pem') }), { code: 'bad_tls_file' })
})

t.test('plugins add admin routes behind admin auth; onServer hooks see the HTTPS server', async t => {
  const dir = await tempDir(t)
  let hooked: Server | undefined
  let hookClosed = false
  const c = await startController({
    stateDir: dir,
    listen: '127.0.0.1:0',
    logger: false,
    plugins: [(app, ctx) => {
      app.get('/v1/hello', { schema: { response: { 200: Obj({ actor: Type.String(), local: Type.Boolean() }), '4xx': ErrorBody } } }, async req => ({ actor: ctx.actor(req), local: ctx.local }))
    }],
    onServer: (server) => {
      hooked = server
      return { close: () => { hookClosed = true } }
    }
  })
  t.equal(hooked, c.app.server, 'the hook got the server')
  t.same((await socketRequest(c.adminSocket, 'GET', '/v1/hello')).body, { actor: 'local-admin', local: true })
  t.equal((await pinnedRequest(c.url, c.fingerprint, 'GET', '/v1/hello')).status, 401)
  const key = (await socketRequest(c.adminSocket, 'POST', '/v1/apikeys', {})).body
  const r = await pinnedRequest(c.url, c.fingerprint, 'GET', '/v1/hello', undefined, { authorization: `Bearer ${key.key as string}` })
  t.same(r.body, { actor: `apikey:${key.apiKey.id as string}`, local: false })
  await c.close()
  t.ok(hookClosed, 'what the hook returned is closed with the controller')
})

t.test('registration over HTTPS with a real server', async t => {
  const dir = await tempDir(t)
  const c = await startController({ stateDir: dir, listen: '127.0.0.1:0', logger: false, domain: 'mesh.example', nodeKeyExpiry: '7d' })
  t.teardown(c.close)
  await socketRequest(c.adminSocket, 'POST', '/v1/users', { name: 'alice' })
  const key = (await socketRequest(c.adminSocket, 'POST', '/v1/authkeys', { user: 'alice', preapproved: true })).body.key
  const info = (await pinnedRequest(c.url, c.fingerprint, 'GET', '/v1/machine/key')).body
  t.equal(info.domain, 'mesh.example')
  const r = await pinnedRequest(c.url, c.fingerprint, 'POST', '/v1/machine/register', registration(info.controllerKey, { authKey: key, hostname: 'pi' }))
  t.equal(r.status, 200)
  t.equal(r.body.node.fqdn, 'pi.mesh.example')
  t.ok(Date.parse(r.body.node.keyExpiry) < Date.now() + 8 * 86_400_000, 'the node key expiry option is used')
  t.match((await c.metrics.registry.metrics()), /warren_controller_registrations_total\{result="ok"\} 1/)
})

t.test('metrics are served only on --metrics-listen, over plain HTTP', async t => {
  const dir = await tempDir(t)
  const c = await startController({ stateDir: dir, listen: '127.0.0.1:0', logger: false, metricsListen: '127.0.0.1:0' })
  t.teardown(c.close)
  t.match(c.metricsUrl, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/)
  t.equal((await pinnedRequest(c.url, c.fingerprint, 'GET', '/v1/nodes')).status, 401)
  t.equal((await pinnedRequest(c.url, c.fingerprint, 'GET', '/metrics')).status, 404, 'still not on the public server')

  const scrape = await fetch(c.metricsUrl!)
  t.equal(scrape.status, 200)
  t.match(scrape.headers.get('content-type'), /^text\/plain/)
  const text = await scrape.text()
  t.match(text, /warren_controller_http_errors_total\{code="unauthenticated"\} 1/)
  t.match(text, /warren_controller_process_resident_memory_bytes/)
  t.match(text, /warren_map_connected_nodes 0/, 'the map service\'s series too')

  const other = await fetch(new URL('/v1/nodes', c.metricsUrl))
  t.equal(other.status, 404)
  t.match(await other.json(), { error: { code: 'not_found' } }, 'nothing else is served there, in the API\'s error shape')

  await t.rejects(startController({ stateDir: await tempDir(t), listen: '127.0.0.1:0', logger: false, metricsListen: 'nowhere' }), { code: 'bad_host_port' })
  const busy = new URL(c.metricsUrl!).port
  await t.rejects(startController({ stateDir: await tempDir(t), listen: '127.0.0.1:0', logger: false, metricsListen: `127.0.0.1:${busy}` }), { code: 'listen_failed', message: /--metrics-listen/ })
})

t.test('--listen forms', async t => {
  t.same(parseListen('127.0.0.1:8443'), { host: '127.0.0.1', port: 8443 })
  t.same(parseListen('[::1]:0'), { host: '::1', port: 0 })
  t.same(parseListen(':443'), { host: '0.0.0.0', port: 443 })
  t.throws(() => parseListen('localhost'), { code: 'bad_host_port' })
  t.throws(() => parseListen('h:99999'), { code: 'bad_host_port' })
})
