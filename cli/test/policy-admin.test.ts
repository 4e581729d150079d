import t from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { startController } from '@warren/controller'
import type { PolicyDiffResponse, PolicyExplainResponse, PolicyInfo, PolicyVersionInfo } from '@warren/protocol'
import { runWarren, tempDir, joinNode, ok, json, type CliResult, type Asserts } from './cli-harness.js'
import { formatDiff, located, parseTarget } from '../src/commands/admin-policy.js'

/**
 * `warren admin policy ...` as a person runs it: the CLI's command lines run in this
 * process against a controller started here too, through its admin socket (--state-dir).
 */

const BASE = `{
  // eng reaches the web servers; web reaches the database
  "groups": { "group:eng": ["alice@", "bob@example.com"] },
  "tagOwners": { "tag:web": ["group:eng"], "tag:db": ["alice@"] },
  "hosts": { "office": "10.1.0.0/16" },
  "acls": [
    { "action": "accept", "src": ["group:eng"], "dst": ["tag:web:80,443"] },
    { "action": "accept", "src": ["tag:web"], "dst": ["tag:db:5432"] },
  ],
  "tests": [
    { "src": "alice@", "accept": ["tag:web:443"], "deny": ["tag:db:5432"] },
  ],
}
`

/** OPEN_DB adds a rule that lets eng reach the database directly, and drops web -> db. */
const OPEN_DB = `{
  "groups": { "group:eng": ["alice@", "bob@example.com"] },
  "tagOwners": { "tag:web": ["group:eng"], "tag:db": ["alice@"] },
  "acls": [
    { "action": "accept", "src": ["group:eng"], "dst": ["tag:web:80,443"] },
    { "action": "accept", "src": ["group:eng"], "dst": ["tag:db:5432"] },
  ],
}
`

/** refusedWith asserts exit 1, a summary line, then the listed FILE:line:column lines in order. */
function refusedWith (tt: Asserts, r: CliResult, summary: RegExp, lines: RegExp[], what: string): void {
  tt.equal(r.code, 1, `${what} exits 1`)
  const err = r.stderr.trimEnd().split('\n')
  tt.match(err[0], summary, `${what}: the summary says what happened`)
  tt.equal(err.length - 1, lines.length, `${what}: one line per problem:\n${r.stderr}`)
  lines.forEach((re, i) => tt.match(err[i + 1], re, `${what}: problem ${i + 1}`))
  tt.equal(r.stdout, '', `${what} prints nothing on stdout`)
}

t.test('warren admin policy against a real controller', async t => {
  const dir = tempDir(t, 'warren-policy-cli-')
  const ctl = await startController({ stateDir: join(dir, 'state'), listen: '127.0.0.1:0', logger: false, rateLimit: false })
  t.teardown(async () => { await ctl.close() })
  const admin = async (...args: string[]): Promise<CliResult> => await runWarren(['admin', '--state-dir', join(dir, 'state'), ...args])
  const file = (name: string, text: string): string => {
    const p = join(dir, name)
    writeFileSync(p, text)
    return p
  }
  const policyVersion = async (): Promise<number> => json<PolicyInfo>(await admin('policy', 'get', '--json')).version

  ok(t, await admin('users', 'create', 'alice', '--email', 'alice@example.com'), 'users create alice')
  ok(t, await admin('users', 'create', 'bob', '--email', 'bob@example.com'), 'users create bob')
  const keyFor = async (tags: string): Promise<string> =>
    json<{ key: string }>(await admin('keys', 'create', '--user', 'alice', '--preapproved', '--tags', tags, '--json')).key
  await joinNode(ctl, await keyFor('tag:web'), 'web1')
  await joinNode(ctl, await keyFor('tag:db'), 'db1')
  await joinNode(ctl, json<{ key: string }>(await admin('keys', 'create', '--user', 'bob', '--preapproved', '--json')).key, 'bobs-laptop')

  await t.test('before any set: the built-in allow-all, an empty history', async tt => {
    const info = json<PolicyInfo>(await admin('policy', 'get', '--json'))
    tt.equal(info.version, 0)
    tt.match(ok(tt, await admin('policy', 'get'), 'get'), /"acls"/, 'get prints the policy file')
    tt.match(ok(tt, await admin('policy', 'history'), 'history'), /no policy set yet: the built-in default \(allow all\)/)
  })

  await t.test('check, set, get, history', async tt => {
    const base = file('base.hujson', BASE)
    tt.equal(ok(tt, await admin('policy', 'check', base), 'check'), `${base}: ok (syntax, names and tests)\n`)
    tt.equal(await policyVersion(), 0, 'check changes nothing')
    const set = await admin('policy', 'set', base, '-m', 'web and db')
    tt.equal(ok(tt, set, 'set'), `applied ${base} as policy v1\n`)
    tt.equal(set.stderr, '', 'no warnings: every user named exists')
    tt.equal(json<PolicyInfo>(await admin('policy', 'get', '--json')).text, BASE, 'get returns the file as set')
    tt.equal(ok(tt, await admin('policy', 'get'), 'get'), BASE, 'get prints exactly the file, so it can be edited and set again')
    tt.match(ok(tt, await admin('policy', 'test'), 'test'), /^policy v1: all tests pass$/m)

    const ghost = file('ghost.hujson', BASE.replace('"bob@example.com"', '"carol@example.com"'))
    const warned = await admin('policy', 'set', ghost, '-m', 'carol joins soon')
    tt.equal(ok(tt, warned, 'set naming a user who does not exist yet'), `applied ${ghost} as policy v2\n`)
    tt.match(warned.stderr, new RegExp(`^warning: ${ghost}:3:39: user carol@example\\.com does not exist yet`), 'a warning placed in the file')

    const table = ok(tt, await admin('policy', 'history'), 'history').trimEnd().split('\n')
    tt.match(table[0], /^VERSION\s+WHO\s+WHEN\s+MESSAGE$/)
    tt.match(table[1], /^\*2\s+local-admin\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ \((just now|\d+s ago)\)\s+carol joins soon$/, 'newest first, marked in force')
    tt.match(table[2], /^ 1\s+local-admin\s+.*\s+web and db$/)
    const versions = json<PolicyVersionInfo[]>(await admin('policy', 'history', '--json'))
    tt.same(versions.map(v => [v.version, v.message]), [[2, 'carol joins soon'], [1, 'web and db']])
  })

  await t.test('rollback makes an old version current as a new version', async tt => {
    tt.equal(ok(tt, await admin('policy', 'rollback', '1'), 'rollback'), 'rolled back to v1: now policy v3\n')
    const info = json<PolicyInfo>(await admin('policy', 'get', '--json'))
    tt.same([info.version, info.text, info.message], [3, BASE, 'rollback to v1'])
    tt.match(ok(tt, await admin('policy', 'rollback', '0', '-m', 'open up while debugging', '--json'), 'rollback to the default'), /"version": 4/)
    tt.match(json<PolicyInfo>(await admin('policy', 'get', '--json')).text, /every node may reach every other node/)
    const missing = await admin('policy', 'rollback', '42')
    tt.equal(missing.code, 1)
    tt.match(missing.stderr, /^warren: no policy version 42; 'warren admin policy history' lists them\n$/)
    tt.equal((await admin('policy', 'rollback', 'latest')).code, 2, 'a version that is not a number is a usage error')
    ok(tt, await admin('policy', 'rollback', '1', '-m', 'back to base'), 'rollback to base')
    tt.equal(await policyVersion(), 5)
  })

  await t.test('a malformed policy: every error at FILE:line:column with a suggestion, and nothing changes', async tt => {
    const bad = file('bad.hujson', `{
  "groups": { "group:eng": ["alice@"] },
  "tagOwners": { "tag:web": ["alice@"] },
  "acls": [
    { "action": "accept", "src": ["group:engg"], "dst": ["tag:web:80"] },
    { "action": "accept", "src": ["*"], "dst": ["tag:dbb:5432", "tag:web:99999"] },
  ],
}
`)
    const expected = [
      new RegExp(`^${bad}:5:35: group group:engg is not defined in "groups" \\(did you mean group:eng\\?\\)$`),
      new RegExp(`^${bad}:6:49: tag tag:dbb has no entry in "tagOwners".*$`),
      new RegExp(`^${bad}:6:65: bad ports "99999" in "tag:web:99999": .*for example 22, 80,443 or 8000-8100\\)$`)
    ]
    refusedWith(tt, await admin('policy', 'check', bad), new RegExp(`^warren: ${bad}: invalid \\(3 problems\\):$`), expected, 'check')
    refusedWith(tt, await admin('policy', 'set', bad, '-m', 'typo'), new RegExp(`^warren: ${bad}: not applied; the policy in force is unchanged \\(3 problems\\):$`), expected, 'set')
    refusedWith(tt, await admin('policy', 'test', bad), new RegExp(`^warren: ${bad}: invalid, so its tests cannot run \\(3 problems\\):$`), expected, 'test')
    const asJson = await admin('policy', 'check', bad, '--json')
    tt.equal(asJson.code, 1, 'check --json exits 1 too')
    tt.same(json<{ ok: boolean, errors: string[] }>(asJson).errors.map(e => e.split(':').slice(0, 2).join(':')), ['5:35', '6:49', '6:65'], 'check --json lists the problems with line:column')
    tt.equal(await policyVersion(), 5, 'the policy in force is unchanged')
    tt.equal(json<PolicyVersionInfo[]>(await admin('policy', 'history', '--json')).length, 5, 'no version was stored')

    const syntax = file('syntax.hujson', '{\n  "acls": [\n    { "action": "accept" "src": ["*"] },\n  ]\n}\n')
    const r = await admin('policy', 'set', syntax)
    tt.equal(r.code, 1)
    tt.match(r.stderr, new RegExp(`\\n${syntax}:3:26: `), 'a syntax error is placed too')
  })

  await t.test('Tailscale sections Warren does not support are refused by name', async tt => {
    const unsupported = file('unsupported.hujson', `{
  "acls": [{ "action": "accept", "src": ["*"], "dst": ["*:*"] }],
  "derpMap": {},
}
`)
    refusedWith(tt, await admin('policy', 'set', unsupported), /not applied/, [
      new RegExp(`^${unsupported}:3:3: derpMap is a Tailscale feature Warren does not support; remove it`)
    ], 'derpMap')
    tt.equal(await policyVersion(), 5)
  })

  await t.test('ssh rules are checked and their sshTests run, and check says they grant nothing yet', async tt => {
    const sshPolicy = (expect: string): string => BASE.replace(/\n}\n$/, `
  "ssh": [
    { "action": "accept", "src": ["group:eng"], "dst": ["tag:db"], "users": ["root"] },
  ],
  "sshTests": [
    { "src": "bob@example.com", "dst": ["tag:db"], ${expect} },
  ],
}
`)
    const good = file('ssh.hujson', sshPolicy('"accept": ["root"], "deny": ["ubuntu"]'))
    const r = await admin('policy', 'check', good)
    tt.equal(r.code, 0, r.stderr)
    tt.equal(r.stdout, `${good}: ok (syntax, names and tests)\n`)
    tt.match(r.stderr, new RegExp(`^warning: ${good}:13:10: the ssh rules are checked and compiled but grant nothing yet: Warren has no SSH server.*acls and grants\n$`),
      'the warning says plainly that the ssh rules grant nothing')
    const failing = file('ssh-failing.hujson', sshPolicy('"deny": ["root"]'))
    refusedWith(tt, await admin('policy', 'test', failing), /tests fail \(1 problem\)/, [
      new RegExp(`^${failing}:17:61: ssh test 1: bob@example.com -> tag:db as root expected deny but ssh rule 1 \\(line 14\\) lets it in without a check$`)
    ], 'a failing ssh test')
    refusedWith(tt, await admin('policy', 'set', failing), /not applied/, [/ssh test 1: .* expected deny/], 'set')
    tt.equal(await policyVersion(), 5, 'a policy whose ssh tests fail is not applied')
  })

  await t.test('Tailscale-only node attributes are accepted with a warning naming each', async tt => {
    const attrs = file('attrs.hujson', `{
  "acls": [{ "action": "accept", "src": ["*"], "dst": ["*:*"] }],
  "nodeAttrs": [{ "target": ["*"], "attr": ["funnel", "randomize-client-port", "mullvad"] }],
}
`)
    const checked = await admin('policy', 'check', attrs)
    tt.equal(checked.code, 0, 'check passes')
    const warnings = checked.stderr.trimEnd().split('\n')
    tt.match(warnings[0], new RegExp(`^warning: ${attrs}:3:\\d+: attribute "funnel" is a Tailscale feature Warren does not have`))
    tt.match(warnings[1], new RegExp(`^warning: ${attrs}:3:\\d+: attribute "mullvad" is a Tailscale feature`))
    tt.equal(warnings.length, 2, 'randomize-client-port, which Warren implements, is not warned about')
    tt.equal(await policyVersion(), 5, 'check stores nothing')
  })

  await t.test('a policy whose tests fail is refused, naming the test and why', async tt => {
    const failing = file('failing.hujson', BASE.replace('"deny": ["tag:db:5432"]', '"deny": ["tag:web:80"]'))
    refusedWith(tt, await admin('policy', 'set', failing), /not applied; the policy in force is unchanged \(1 problem\):$/, [
      new RegExp(`^${failing}:11:60: test 1: alice@ -> tag:web:80/tcp expected deny but is allowed by rule 1 \\(line 7\\)$`)
    ], 'set')
    refusedWith(tt, await admin('policy', 'test', failing), /tests fail \(1 problem\)/, [/expected deny but is allowed by rule 1/], 'test FILE')
    tt.equal(await policyVersion(), 5)
  })

  await t.test('diff shows access gained and lost, by name', async tt => {
    const open = file('open-db.hujson', OPEN_DB)
    const d = json<PolicyDiffResponse>(await admin('policy', 'diff', open, '--json'))
    const rows = (list: PolicyDiffResponse['gained']): string[] => list.map(a => `${a.kind} ${a.src} -> ${a.dst} ${a.proto} ${a.ports}`)
    tt.ok(rows(d.gained).includes('identity alice@ -> tag:db tcp,udp 5432'), `alice gains the database: ${rows(d.gained).join('; ')}`)
    tt.ok(rows(d.gained).includes('node bobs-laptop -> db1 tcp,udp 5432'), 'by node name too')
    tt.ok(rows(d.lost).includes('identity tag:web -> tag:db tcp,udp 5432'), `web loses the database: ${rows(d.lost).join('; ')}`)
    tt.ok(rows(d.lost).includes('node web1 -> db1 tcp,udp 5432'))
    const text = ok(tt, await admin('policy', 'diff', open), 'diff')
    tt.match(text, /^between identities \(users, groups, tags, hosts\):\nCHANGE\s+SOURCE\s+DESTINATION\s+PROTO\s+PORTS\n/)
    tt.match(text, /^\+ gained\s+alice@\s+tag:db\s+tcp,udp\s+5432$/m)
    tt.match(text, /^- lost\s+web1\s+db1\s+tcp,udp\s+5432$/m)
    tt.match(text, /\nbetween nodes:\n/)
    tt.equal(ok(tt, await admin('policy', 'diff', file('same.hujson', BASE)), 'diff with itself'), 'no access changes\n')
    tt.equal(await policyVersion(), 5, 'diff changes nothing')
    const bad = await admin('policy', 'diff', file('bad-diff.hujson', '{ "acls": [{ "action": "accept", "src": ["group:nope"], "dst": ["*:*"] }] }'))
    tt.equal(bad.code, 1)
    tt.match(bad.stderr, /bad-diff\.hujson:1:42: group group:nope is not defined/)
  })

  await t.test('explain names the allowing rules with lines, or says nothing allows the flow', async tt => {
    tt.equal(ok(tt, await admin('policy', 'explain', 'alice@', 'tag:web:443'), 'explain'),
      'alice@ -> tag:web:443/tcp is allowed by:\n  rule 1 (line 7): { "action": "accept", "src": ["group:eng"], "dst": ["tag:web:80,443"] }\n')
    tt.equal(ok(tt, await admin('policy', 'explain', 'alice@', 'tag:db:5432'), 'explain denied'), 'nothing allows alice@ to reach tag:db:5432/tcp\n')
    tt.match(ok(tt, await admin('policy', 'explain', 'web1', 'db1:5432'), 'explain by node name'), /rule 2 \(line 8\)/)
    tt.match(ok(tt, await admin('policy', 'explain', 'bob@example.com', 'web1', '--proto', 'icmp'), 'explain ICMP without a port'), /over icmp is allowed by:\n {2}rule 1 \(line 7\)/)
    const r = json<PolicyExplainResponse>(await admin('policy', 'explain', 'tag:web', 'tag:db:5432', '--proto', 'udp', '--json'))
    tt.same([r.allowed, r.rules.map(x => x.line)], [true, [8]])
    const noPort = await admin('policy', 'explain', 'alice@', 'tag:web')
    tt.equal(noPort.code, 2)
    tt.match(noPort.stderr, /'tag:web' needs a port: write DST:PORT/)
  })

  await t.test('unreadable files and unknown names are clear errors', async tt => {
    const missing = await admin('policy', 'set', join(dir, 'nope.hujson'))
    tt.equal(missing.code, 1)
    tt.match(missing.stderr, /^warren: cannot read policy file .*nope\.hujson: ENOENT/)
    const r = await admin('policy', 'explain', 'group:ghosts', 'tag:web:80')
    tt.equal(r.code, 1)
    tt.match(r.stderr, /group:ghosts/)
  })

  await t.test('diff and explain show the capabilities of grants with app, with values and the grant', async tt => {
    const withCaps = file('caps.hujson', BASE.replace(/\n}\n$/, `
  "grants": [
    { "src": ["group:eng"], "dst": ["tag:web"], "app": { "example.com/cap/web": [{ "role": "admin" }] } },
  ],
}
`))
    const d = json<PolicyDiffResponse>(await admin('policy', 'diff', withCaps, '--json'))
    tt.same([d.gained, d.lost], [[], []], 'a capability is no traffic')
    tt.same((d.caps ?? []).map(c => `${c.kind} ${c.src} -> ${c.dst} ${c.change} ${c.cap} ${JSON.stringify(c.after)}`), [
      'identity alice@ -> tag:web gained example.com/cap/web [{"role":"admin"}]',
      'identity bob@ -> tag:web gained example.com/cap/web [{"role":"admin"}]',
      'node bobs-laptop -> web1 gained example.com/cap/web [{"role":"admin"}]'
    ])
    const text = ok(tt, await admin('policy', 'diff', withCaps), 'diff')
    tt.match(text, /^capabilities between identities \(users, groups, tags, hosts\):\nCHANGE\s+SOURCE\s+DESTINATION\s+CAPABILITY\s+VALUES\n/)
    tt.match(text, /\ncapabilities between nodes:\n.*\n\+ gained\s+bobs-laptop\s+web1\s+example\.com\/cap\/web\s+\[\{"role":"admin"\}\]\n$/)

    ok(tt, await admin('policy', 'set', withCaps), 'set')
    tt.equal(ok(tt, await admin('policy', 'explain', 'alice@', 'tag:web:443'), 'explain'),
      'alice@ -> tag:web:443/tcp is allowed by:\n  rule 1 (line 7): { "action": "accept", "src": ["group:eng"], "dst": ["tag:web:80,443"] }\n' +
      'alice@ gets these capabilities at tag:web:\n  example.com/cap/web [{"role":"admin"}] from rule 3 (line 14): { "src": ["group:eng"], "dst": ["tag:web"], "app": { "example.com/cap/web": [{ "role": "admin" }] } }\n')
    const r = json<PolicyExplainResponse>(await admin('policy', 'explain', 'bobs-laptop', 'web1:22', '--json'))
    tt.same([r.allowed, r.caps?.map(c => [c.cap, c.values, c.index, c.line])], [false, [['example.com/cap/web', [{ role: 'admin' }], 2, 14]]],
      'a node that may not reach the port still gets the capability, by its owner\'s group')
    const changed = file('caps-changed.hujson', BASE)
    const back = json<PolicyDiffResponse>(await admin('policy', 'diff', changed, '--json'))
    tt.same((back.caps ?? []).filter(c => c.kind === 'node').map(c => [c.src, c.dst, c.change, c.before]), [['bobs-laptop', 'web1', 'lost', [{ role: 'admin' }]]])
  })
})

t.test('policy CLI helpers', async tt => {
  tt.same(located('p.hujson', ['3:4: what', '... and 2 more']), ['p.hujson:3:4: what', '... and 2 more'])
  tt.same(parseTarget('tag:db:5432', undefined), { dst: 'tag:db', port: 5432 })
  tt.same(parseTarget('[fd7a::1]:22', undefined), { dst: 'fd7a::1', port: 22 })
  tt.same(parseTarget('web1', 'icmp'), { dst: 'web1', port: 0 })
  tt.throws(() => parseTarget('web1:70000', undefined), /out of range/)
  tt.equal(formatDiff({ gained: [], lost: [] }), 'no access changes\n')
  tt.equal(formatDiff({
    gained: [],
    lost: [],
    caps: [
      { kind: 'identity', src: 'alice@', dst: 'tag:web', cap: 'example.com/cap/web', change: 'changed', before: [{ role: 'user' }], after: [{ role: 'admin' }] },
      { kind: 'node', src: 'laptop', dst: 'web', cap: 'example.com/cap/logs', change: 'lost', before: [] }
    ]
  }), 'capabilities between identities (users, groups, tags, hosts):\n' +
    'CHANGE     SOURCE  DESTINATION  CAPABILITY           VALUES\n' +
    '~ changed  alice@  tag:web      example.com/cap/web  [{"role":"user"}] -> [{"role":"admin"}]\n' +
    '\ncapabilities between nodes:\n' +
    'CHANGE  SOURCE  DESTINATION  CAPABILITY            VALUES\n' +
    '- lost  laptop  web          example.com/cap/logs  []\n', 'a change shows old -> new values; a lost capability its old ones')
})
