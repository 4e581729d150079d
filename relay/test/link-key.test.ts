import t from 'tap'
import { EventEmitter } from 'node:events'
import { Readable } from 'node:stream'
import { mkdtemp, rm, writeFile, chmod } from 'node:fs/promises'
import { execFileSync } from 'node:child_process'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { formatCredential } from '@warren/protocol'
import { readLinkKeyFile, relayLinkKey, webSocketLinkSocket, type LinkWebSocket } from '../src/index.js'

const KEY = formatCredential({ kind: 'api', id: '0123456789ab', secret: 'a'.repeat(32) })

t.test('readLinkKeyFile takes a key only from a regular file that group and others cannot touch', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'warren-link-key-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'link.key')
  await writeFile(file, `\n${KEY}\n`, { mode: 0o600 })
  t.equal(await readLinkKeyFile(file), KEY, 'a 0600 file, trimmed')
  await chmod(file, 0o400)
  t.equal(await readLinkKeyFile(file), KEY, 'read-only for the owner is fine')
  for (const mode of [0o644, 0o640, 0o604, 0o602, 0o620]) {
    await chmod(file, mode)
    await t.rejects(readLinkKeyFile(file), { code: 'bad_key_file', message: new RegExp(`^relay key file ${file} has mode 0${mode.toString(8)}, .*run 'chmod 600 ${file}'`) }, `mode 0${mode.toString(8)} is refused`)
  }
  await t.rejects(readLinkKeyFile(dir), { message: /is not a regular file/ }, 'a directory')
  const fifo = join(dir, 'fifo')
  execFileSync('mkfifo', ['-m', '600', fifo])
  await t.rejects(readLinkKeyFile(fifo), { message: /is not a regular file/ }, 'a FIFO is refused without waiting for a writer')
  const big = join(dir, 'big.key')
  await writeFile(big, 'x'.repeat(5000), { mode: 0o600 })
  await t.rejects(readLinkKeyFile(big), { message: /is 5000 bytes; it should hold only the secret/ })

  await t.rejects(relayLinkKey({ env: {} }), { message: /--key-file FILE, or set WARREN_RELAY_KEY/ }, 'no key at all')
  t.equal(await relayLinkKey({ env: { WARREN_RELAY_KEY: ` ${KEY}\n` } }), KEY, 'the key from the environment')
})

/** fakeWebSocket is an EventEmitter with the LinkWebSocket calls, recording terminate. */
function fakeWebSocket (): LinkWebSocket & EventEmitter & { terminated: boolean } {
  const ws = Object.assign(new EventEmitter(), {
    terminated: false,
    send: () => {},
    close: () => { ws.emit('close', 1000) },
    terminate: () => { ws.terminated = true; ws.emit('error', new Error('WebSocket was closed before the connection was established')); ws.emit('close', 1006) }
  })
  return ws as unknown as LinkWebSocket & EventEmitter & { terminated: boolean }
}

t.test('webSocketLinkSocket reports the controller\'s reason for a refused upgrade', async t => {
  const ws = fakeWebSocket()
  const s = webSocketLinkSocket(ws)
  const why = new Promise<string>(resolve => { s.onClose(resolve) })
  const body = JSON.stringify({ error: { code: 'forbidden_scope', message: 'API key 0123456789ab is an admin key; make a relay key' } })
  ws.emit('unexpected-response', { destroy: () => {} }, Object.assign(Readable.from([Buffer.from(body)]), { statusCode: 403 }))
  t.equal(await why, 'the controller refused this relay (HTTP 403, forbidden_scope): API key 0123456789ab is an admin key; make a relay key')
  t.ok(ws.terminated, 'the refused connection is given up')

  const other = fakeWebSocket()
  const s2 = webSocketLinkSocket(other)
  const why2 = new Promise<string>(resolve => { s2.onClose(resolve) })
  other.emit('unexpected-response', { destroy: () => {} }, Object.assign(Readable.from([Buffer.from('<html>bad gateway</html>')]), { statusCode: 502 }))
  t.equal(await why2, 'the controller refused this relay with HTTP 502', 'a body that is not the API\'s error shape')
})
