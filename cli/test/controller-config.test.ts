import t from 'tap'
import { mkdtempSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Command } from 'commander'
import { createProgram } from '../src/program.js'
import { runWarren, failsWith } from './cli-harness.js'

/** serveOptions parses a `controller serve` command line and returns the options its action would get, without starting anything. */
async function serveOptions (args: string[]): Promise<Record<string, unknown>> {
  const program = createProgram()
  const serve = program.commands.find(c => c.name() === 'controller')!.commands.find(c => c.name() === 'serve') as Command
  let got: Record<string, unknown> | undefined
  serve.action((opts: Record<string, unknown>) => { got = opts })
  await program.parseAsync(['node', 'warren', 'controller', 'serve', ...args])
  return got!
}

t.test('controller serve --config', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'warren-config-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  let n = 0
  const file = (text: string): string => {
    const f = join(dir, `config-${n++}.hujson`)
    writeFileSync(f, text)
    return f
  }
  const good = file(`{
    // the controller of the lab
    "listen": "127.0.0.1:8443",
    "stateDir": "${dir}/state",
    "stunPort": 3490,
    "relay": false,
    "oidcIssuer": "https://auth.example.com",
    "oidcClientSecretFile": "${dir}/secret",
    "oidcAllowedGroups": ["eng", "ops"],
  }`)

  await t.test('file values apply', async t => {
    t.match(await serveOptions(['--config', good]), {
      listen: '127.0.0.1:8443', stateDir: `${dir}/state`, stunPort: 3490, relay: false, tlsRelay: true,
      oidcIssuer: 'https://auth.example.com', oidcClientSecretFile: `${dir}/secret`, oidcAllowedGroups: 'eng,ops', domain: 'warren.internal'
    })
  })

  await t.test('flags on the command line override the file', async t => {
    const o = await serveOptions(['--config', good, '--listen', '0.0.0.0:9443', '--stun-port', '0', '--oidc-allowed-groups', 'admins'])
    t.match(o, { listen: '0.0.0.0:9443', stunPort: 0, oidcAllowedGroups: 'admins', stateDir: `${dir}/state`, relay: false })
  })

  await t.test('the OIDC options read from the file reach the login setup', async t => {
    const secret = join(dir, 'secret')
    writeFileSync(secret, 's3cret\n')
    chmodSync(secret, 0o600)
    const { oidcOptions } = await import('../src/commands/controller-oidc.js')
    t.match(await oidcOptions({ ...await serveOptions(['--config', good]), oidcClientId: 'warren' }), { issuer: 'https://auth.example.com', clientSecret: 's3cret', allowedGroups: ['eng', 'ops'] })
  })

  await t.test('the README\'s example files are valid', async t => {
    const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8')
    const examples = [...readme.matchAll(/```jsonc\n([\s\S]*?)```/g)].map(m => m[1]!).filter(text => text.includes('"stateDir"'))
    t.equal(examples.length, 2, 'one in "Run a controller", one in the SSO section')
    for (const text of examples) t.match(await serveOptions(['--config', file(text)]), { stateDir: '/var/lib/warren/controller', listen: '0.0.0.0:8443' })
  })

  await t.test('refusals name the file, the key and the fix, and start nothing', async t => {
    const refuse = async (text: string, want: RegExp, what: string): Promise<void> => {
      const f = file(text)
      const r = await runWarren(['controller', 'serve', '--config', f, '--listen', '127.0.0.1:0', '--state-dir', join(dir, 'never')])
      failsWith(t, r, new RegExp(`config file ${f.replace(/[.]/g, '\\.')}${want.source}`), what)
      t.equal(r.stdout, '', `${what}: nothing started`)
    }
    await refuse('{\n  "listen": "127.0.0.1:0",\n  "oidcIsuer": "https://a"\n}', /:3:3: unknown key "oidcIsuer"; did you mean oidcIssuer\?$/, 'a typo gets a suggestion')
    await refuse('{"noRelay": true}', /:1:2: unknown key "noRelay"; write "relay": false$/, 'a negated flag says how to write it')
    await refuse('{"frobnicate": 1}', /:1:2: unknown key "frobnicate"; the keys are the long flags of 'warren controller serve --help' in camelCase/, 'an unknown key')
    await refuse('{"oidcClientSecret": "hunter2"}', /:1:2: unknown key "oidcClientSecret"; secrets stay out of the config file: .* name that file with "oidcClientSecretFile"$/, 'a secret literal')
    await refuse('{"relay": "no"}', /:1:2: "relay" must be true or false, not "no"$/, 'a string for a switch')
    await refuse('{"listen": ["a"]}', /:1:2: "listen" must be a string, not \["a"\]$/, 'a list for a single value')
    await refuse('{"oidcAllowedGroups": [1]}', /:1:2: "oidcAllowedGroups" must be a string or a list of strings/, 'a list of numbers')
    await refuse('{"stunPort": 70000}', /:1:2: "stunPort" "70000" is not valid: use a UDP port/, 'a value the flag refuses')
    await refuse('{"listen": }', /:1:12: ValueExpected; the file is JSON with comments/, 'a syntax error')
    await refuse('["listen"]', /: must hold one JSON object/, 'not an object')
    const missing = join(dir, 'missing.hujson')
    failsWith(t, await runWarren(['controller', 'serve', '--config', missing]), new RegExp(`^warren: config file ${missing.replace(/[.]/g, '\\.')} does not exist; check the path given to --config$`), 'a missing file')
    failsWith(t, await runWarren(['controller', 'serve', '--config', dir]), /config file .* is a directory/, 'a directory')
  })

  await t.test('--state-dir and --listen come from the flags or the file', async t => {
    const f = file('{"listen": "127.0.0.1:0"}')
    failsWith(t, await runWarren(['controller', 'serve', '--config', f]), /^warren: required option '--state-dir <dir>' not specified \(pass it, or set "stateDir" in the --config file\)$/, 'no state dir', 2)
    failsWith(t, await runWarren(['controller', 'serve', '--state-dir', dir]), /required option '--listen <host:port>' not specified/, 'no listen address without a file', 2)
  })
})
