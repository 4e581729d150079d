import t from 'tap'
import { existsSync, writeFileSync, chmodSync, chownSync } from 'node:fs'
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import type { ApiKeyInfo } from '@warren/protocol'
import { runWarren, startTestController, tempDir, ok, failsWith, json, WARREN_BIN } from './cli-harness.js'

t.test('apikeys create --scope relay: a key that links a relay and cannot run admin commands', async tt => {
  const ctl = await startTestController(tt)
  const local = async (...args: string[]) => await runWarren(['admin', '--state-dir', ctl.stateDir, ...args])
  const relay = json<{ key: string } & ApiKeyInfo>(await local('apikeys', 'create', '--scope', 'relay', '--description', 'relay edge-1', '--json'))
  tt.equal(relay.scope, 'relay')
  const shown = ok(tt, await local('apikeys', 'create'), 'an admin key by default')
  tt.match(shown, /scope admin/)
  tt.match(ok(tt, await local('apikeys', 'create', '--scope', 'relay'), 'a relay key in a table'), /scope relay.*\n.*warren relay serve .*--key-file FILE/, 'the hint says where a relay key goes')
  const table = ok(tt, await local('apikeys', 'list'), 'apikeys list')
  tt.match(table, /^ID\s+SCOPE\s+DESCRIPTION/, 'the list has a scope column')
  tt.match(table, new RegExp(`${relay.id}\\s+relay\\s+relay edge-1`))
  const unknown = await local('apikeys', 'create', '--scope', 'root')
  tt.equal(unknown.code, 2, 'an unknown scope is a usage error')
  tt.match(unknown.stderr, /^warren: option '--scope <scope>' argument 'root' is invalid. Allowed choices are admin, relay/)

  const r = await runWarren(['admin', 'users', 'list'], { WARREN_CONTROLLER: ctl.url, WARREN_API_KEY: relay.key })
  failsWith(tt, r, /may only link a relay; use an admin key/, 'a relay key at the admin API')
})

t.test('relay serve takes its key from a 0600 file or WARREN_RELAY_KEY, never the command line', async tt => {
  const ctl = await startTestController(tt)
  const { key } = json<{ key: string }>(await runWarren(['admin', '--state-dir', ctl.stateDir, 'apikeys', 'create', '--scope', 'relay', '--json']))
  const dir = tempDir(tt)
  const stateDir = join(dir, 'relay-state')
  const serve = ['relay', 'serve', '--controller', ctl.url, '--state-dir', stateDir, '--public-host', '127.0.0.1']

  failsWith(tt, await runWarren([...serve, '--api-key', key]), /--api-key is not taken here: a key on the command line shows in 'ps'; put a relay key .* and pass --key-file FILE, or set WARREN_RELAY_KEY/, 'a key on the command line')
  failsWith(tt, await runWarren(serve), /a relay needs its key: .*--key-file FILE, or set WARREN_RELAY_KEY; make one .*'warren admin apikeys create --scope relay'/, 'no key at all')

  const loose = join(dir, 'loose.key')
  writeFileSync(loose, `${key}\n`)
  chmodSync(loose, 0o644)
  const refused = await runWarren([...serve, '--key-file', loose])
  failsWith(tt, refused, new RegExp(`relay key file ${loose} has mode 0644, so others on this host may read it; run 'chmod 600 ${loose}'`), 'a key file others may read')
  tt.notMatch(refused.stderr, key.split('-')[2]!, 'the key is not echoed')

  const garbage = join(dir, 'garbage.key')
  writeFileSync(garbage, 'hunter2-not-a-key\n', { mode: 0o600 })
  const bad = await runWarren([...serve, '--key-file', garbage])
  failsWith(tt, bad, new RegExp(`relay key file ${garbage} does not hold an API key: malformed API key`), 'a file without a key')
  tt.notMatch(bad.stderr, /hunter2/, 'nor is what the file holds')
  failsWith(tt, await runWarren([...serve, '--key-file', dir]), new RegExp(`relay key file ${dir} is not a regular file`), 'a directory')
  failsWith(tt, await runWarren([...serve, '--key-file', join(dir, 'missing.key')]), /relay key file .*missing\.key does not exist/, 'a missing file')

  const good = join(dir, 'relay.key')
  writeFileSync(good, `${key}\n`, { mode: 0o600 })
  failsWith(tt, await runWarren([...serve, '--key-file', good], { WARREN_RELAY_KEY: key }), /both --key-file and WARREN_RELAY_KEY are set/, 'two keys')
  failsWith(tt, await runWarren(serve, { WARREN_RELAY_KEY: 'wrnapi-nonsense' }), /WARREN_RELAY_KEY does not hold an API key/, 'a malformed key in the environment')
  tt.notOk(existsSync(stateDir), 'a refused key changes nothing on the host')
})

t.test('relay serve: the TLS relay\'s flags are checked before anything starts', async tt => {
  const dir = tempDir(tt)
  const stateDir = join(dir, 'relay-state')
  const serve = ['relay', 'serve', '--controller', 'https://127.0.0.1:1', '--state-dir', stateDir, '--public-host', '127.0.0.1']
  failsWith(tt, await runWarren([...serve, '--tls-cert', join(dir, 'c.pem'), '--tls-key', join(dir, 'k.pem')]), /--tls-cert and --tls-key are for the TLS relay; add --tls-listen HOST:PORT to run one/, 'a certificate without a TLS relay')
  failsWith(tt, await runWarren([...serve, '--tls-listen', 'nope']), /--tls-listen 'nope' must be HOST:PORT/, 'a listen address that is none')
  failsWith(tt, await runWarren([...serve, '--no-udp-relay']), /--no-udp-relay leaves nothing to run; add --tls-listen HOST:PORT for a TLS-only relay/, 'no relay at all')
  failsWith(tt, await runWarren([...serve, '--no-udp-relay', '--tls-listen', '127.0.0.1:0', '--ports', '40000-40099']), /--ports is for the kernel UDP relay, which --no-udp-relay turns off/, 'a UDP relay flag with --no-udp-relay')
  failsWith(tt, await runWarren([...serve, '--no-udp-relay', '--tls-listen', '127.0.0.1:0', '--listen-host', '::']), /--listen-host is for the kernel UDP relay/, 'the UDP listen address with --no-udp-relay')
  failsWith(tt, await runWarren([...serve, '--public-host6', '127.0.0.2']), /--public-host6 '127\.0\.0\.2' must be an IPv6 address/, 'an IPv6 public host that is IPv4')
  tt.notOk(existsSync(stateDir), 'nothing changed on the host')
})

t.test('relay serve --no-udp-relay: a TLS-only relay runs as an ordinary user, links, and is listed without a UDP endpoint', async tt => {
  const ctl = await startTestController(tt)
  const { key } = json<{ key: string }>(await runWarren(['admin', '--state-dir', ctl.stateDir, 'apikeys', 'create', '--scope', 'relay', '--json']))
  const dir = tempDir(tt)
  const keyFile = join(dir, 'relay-link.key')
  writeFileSync(keyFile, `${key}\n`, { mode: 0o600 })
  // As root the relay runs as nobody: it must need no privilege (no nft, no sysctls).
  const asUser = process.getuid?.() === 0 ? ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'] : []
  if (asUser.length > 0) {
    chownSync(dir, 65534, 65534)
    chownSync(keyFile, 65534, 65534)
  }
  const relay = spawnRelay(tt, [...asUser, process.execPath, WARREN_BIN, 'relay', 'serve', '--controller', ctl.url, '--key-file', keyFile,
    '--state-dir', join(dir, 'state'), '--public-host', '127.0.0.1', '--id', 'tls-only', '--no-udp-relay', '--tls-listen', '127.0.0.1:0'])
  await relay.waitFor(/controller accepted this relay/)
  tt.match(relay.output(), /warren relay 'tls-only' with no UDP relay \(key \S+\), linking to https:/, 'it says it runs no UDP relay')
  const [, url] = /TLS relay on (https:\/\/127\.0\.0\.1:\d+) /.exec(relay.output()) ?? []
  tt.ok(url, 'it prints the TLS relay\'s URL')
  const listed = ctl.map!.relays.backends().map(b => b.info).find(r => r.id === 'tls-only')
  tt.match(listed, { id: 'tls-only', tls: url, tlsFingerprint: /^[0-9a-f]{64}$/ }, 'the controller lists its TLS relay')
  tt.equal(listed?.udp, undefined, 'and no UDP endpoint, so it gets no kernel pair')
  tt.equal(await relay.stop(), 0, 'it stops cleanly on SIGTERM')
})

/** spawnRelay runs a relay command line as a child, stopped when the test ends. */
function spawnRelay (tt: { teardown: (fn: () => unknown) => void }, argv: string[]) {
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('WARREN_'))) })
  let out = ''
  const heard = new Set<() => void>()
  const take = (b: Buffer): void => { out += b.toString('utf8'); for (const h of heard) h() }
  child.stdout.on('data', take)
  child.stderr.on('data', take)
  const exited = new Promise<number | null>(resolve => child.on('exit', c => { resolve(c) }))
  const stop = async (): Promise<number | null> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
    return await exited
  }
  tt.teardown(stop)
  return {
    output: () => out,
    stop,
    waitFor: async (re: RegExp): Promise<void> => {
      await new Promise<void>((resolve, reject) => {
        const check = (): void => { if (re.test(out)) { heard.delete(check); resolve() } }
        heard.add(check)
        void exited.then(() => { heard.delete(check); reject(new Error(`the relay exited before printing ${re}: ${out.slice(-2000)}`)) })
        check()
      })
    }
  }
}
