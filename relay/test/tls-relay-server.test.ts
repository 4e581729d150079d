import t from 'tap'
import { get } from 'node:https'
import type { TLSSocket } from 'node:tls'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startTlsRelayServer, loadOrCreateTls, createRelayMembers } from '../src/index.js'

/** The standalone TLS relay's own HTTPS listener: its URL and pin, what it answers, what it refuses. */

async function tempDir (t: { teardown: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'warren-tls-relay-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  return dir
}

t.test('it serves the relay path only, at a URL on the public host, pinned by its certificate', async t => {
  const cert = await loadOrCreateTls({ stateDir: await tempDir(t), commonName: 'warren-relay' })
  const server = await startTlsRelayServer({ host: '127.0.0.1', port: 0, publicHost: 'relay.example.com', tls: cert, members: createRelayMembers() })
  t.teardown(server.close)
  t.match(server.url, /^https:\/\/relay\.example\.com:\d+$/, 'the URL names the public host and the bound port')
  t.equal(server.fingerprint, cert.fingerprint)
  const port = Number(new URL(server.url).port)
  const answer = await new Promise<{ status: number, body: string, fingerprint: string }>((resolve, reject) => {
    get({ host: '127.0.0.1', port, path: '/', rejectUnauthorized: false }, res => {
      const presented = (res.socket as TLSSocket).getPeerCertificate().fingerprint256
      let body = ''
      res.on('data', c => { body += String(c) })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, fingerprint: presented.replace(/:/g, '').toLowerCase() }))
    }).on('error', reject)
  })
  t.equal(answer.fingerprint, cert.fingerprint, 'it presents the certificate whose fingerprint the map lists')
  t.equal(answer.status, 404)
  t.match(JSON.parse(answer.body), { error: { code: 'not_found', message: /Warren TLS relay.*\/v1\/relay/ } })
})

/** statusAt asks the server at host:port for / and gives the status of its answer. */
async function statusAt (host: string, port: number): Promise<number> {
  return await new Promise((resolve, reject) => {
    get({ host, port, path: '/', rejectUnauthorized: false }, res => { res.resume(); resolve(res.statusCode ?? 0) }).on('error', reject)
  })
}

t.test('with no listen host it serves both families on one port', async t => {
  const cert = await loadOrCreateTls({ stateDir: await tempDir(t), commonName: 'warren-relay' })
  const server = await startTlsRelayServer({ host: '', port: 0, publicHost: 'relay.example.com', tls: cert, members: createRelayMembers() })
  t.teardown(server.close)
  const port = Number(new URL(server.url).port)
  t.equal(await statusAt('127.0.0.1', port), 404, 'it answers over IPv4')
  const v6 = await statusAt('::1', port).catch((e: NodeJS.ErrnoException) => e.code)
  if (v6 === 'EADDRNOTAVAIL' || v6 === 'ENETUNREACH' || v6 === 'EAFNOSUPPORT') t.comment('no IPv6 loopback here; IPv4 only')
  else t.equal(v6, 404, 'and over IPv6, on the same port')
})

t.test('a certificate and key that do not match are refused before it listens', async t => {
  const one = await loadOrCreateTls({ stateDir: await tempDir(t) })
  const other = await loadOrCreateTls({ stateDir: await tempDir(t) })
  await t.rejects(startTlsRelayServer({ host: '127.0.0.1', port: 0, tls: { ...one, key: other.key }, members: createRelayMembers() }),
    { code: 'bad_tls_file', message: /cannot use its certificate and key .*--tls-cert and --tls-key/ })
})
