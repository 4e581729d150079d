import t from 'tap'
import { parseCredential, type Node, type User, type AuthKeyInfo, type AuditEntry } from '@warren/protocol'
import { runWarren, startTestController, joinNode, ok, failsWith, json, type CliResult } from './cli-harness.js'

t.test('admin over the local socket: users, auth keys, nodes, API keys, audit', async tt => {
  const ctl = await startTestController(tt)
  const fp = ctl.fingerprint
  const local = async (...args: string[]): Promise<CliResult> => await runWarren(['admin', '--state-dir', ctl.stateDir, ...args])

  tt.test('users', async tt => {
    tt.match(ok(tt, await local('users', 'create', 'alice', '--email', 'alice@example.com'), 'users create'), /^created user alice <alice@example\.com>/)
    ok(tt, await local('users', 'create', 'bob'), 'users create bob')
    const table = ok(tt, await local('users', 'list'), 'users list')
    const lines = table.trimEnd().split('\n')
    tt.match(lines[0], /^NAME\s+EMAIL\s+ROLE\s+ID\s+CREATED$/, 'a header row')
    tt.match(lines[1], /^alice\s+alice@example\.com\s+owner\s+[0-9a-f]+\s+(just now|\d+s ago)$/)
    tt.equal(lines[1]!.indexOf('alice@'), lines[0]!.indexOf('EMAIL'), 'columns are aligned')
    const users = json<User[]>(await local('users', 'list', '--json'))
    tt.same(users.map(u => u.name).sort(), ['alice', 'bob'])
    failsWith(tt, await local('users', 'create', 'alice'), /alice.*exists/, 'a duplicate user')
    failsWith(tt, await local('users', 'create', 'Not Valid'), /user name 'Not Valid' is not valid: .*for example alice/, 'a bad user name')
    failsWith(tt, await local('users', 'create', 'dave', '--email', 'nope'), /'nope' is not an email address/, 'a bad email')
    tt.match(ok(tt, await local('users', 'delete', 'bob'), 'users delete'), /deleted user bob/)
    failsWith(tt, await local('users', 'delete', 'bob'), /bob/, 'deleting an unknown user')
  })

  tt.test('auth keys embed the pin, and bad input changes nothing', async tt => {
    const created = json<{ key: string, id: string, user: string, reusable: boolean, tags: string[] }>(
      await local('keys', 'create', '--user', 'alice', '--reusable', '--tags', 'tag:web,tag:db', '--json'))
    tt.match(created.key, /^wrnauth-/, 'the secret is in `key`')
    tt.equal(created.user, 'alice')
    tt.equal(created.reusable, true)
    tt.same([...created.tags].sort(), ['tag:db', 'tag:web'])
    tt.equal(parseCredential(created.key, 'auth').fingerprint, fp, 'the key carries the controller fingerprint')

    const human = ok(tt, await local('keys', 'create', '--user', 'alice', '--expiry', '1h'), 'keys create (table form)')
    const keyLine = human.split('\n').find(l => l.startsWith('wrnauth-'))
    tt.ok(keyLine, 'the key is printed on a line of its own')
    tt.equal(parseCredential(keyLine!, 'auth').fingerprint, fp)
    tt.match(human, /single-use, expires in 1h/)

    const before = ok(tt, await local('keys', 'list', '--json'), 'keys list')
    failsWith(tt, await local('keys', 'create', '--user', 'nobody'), /user 'nobody' does not exist/, 'an unknown user')
    failsWith(tt, await local('keys', 'create', '--user', 'alice', '--expiry', 'tomorrow'), /--expiry 'tomorrow' is not a duration/, 'a bad duration')
    failsWith(tt, await local('keys', 'create', '--user', 'alice', '--tags', 'web'), /'web' is not a tag.*tag:server/, 'a bad tag')
    failsWith(tt, await local('keys', 'create'), /--user/, 'no owner', 2)
    tt.equal(ok(tt, await local('keys', 'list', '--json'), 'keys list'), before, 'nothing was created by bad input')

    const table = ok(tt, await local('keys', 'list'), 'keys list')
    tt.match(table, /^ID\s+USER\s+KIND\s+TAGS\s+CREATED\s+EXPIRES\s+STATE\n/)
    tt.match(table, new RegExp(`${created.id}\\s+alice\\s+reusable\\s+tag:db,tag:web\\s+(just now|\\d+s ago)\\s+in 90d\\s+valid`), 'the default expiry is the controller\'s (90d)')
    ok(tt, await local('keys', 'expire', created.id), 'keys expire')
    const keys = json<AuthKeyInfo[]>(await local('keys', 'list', '--json'))
    tt.equal(keys.find(k => k.id === created.id)?.revoked, true, 'the expired key is revoked')
    tt.match(ok(tt, await local('keys', 'list'), 'keys list'), new RegExp(`${created.id}.*revoked`))
  })

  tt.test('nodes: pending, approve, rename, tag, expire, delete', async tt => {
    const { key } = json<{ key: string }>(await local('keys', 'create', '--user', 'alice', '--reusable', '--json'))
    const laptop = await joinNode(ctl, key, 'Laptop.local')
    tt.equal(laptop.status, 'pending', 'a key without --preapproved needs approval')
    const list = json<Node[]>(await local('nodes', 'list', '--json'))
    tt.same(list.map(n => ({ id: n.id, name: n.name, status: n.status })), [{ id: laptop.id, name: 'laptop', status: 'pending' }])
    tt.match(ok(tt, await local('nodes', 'list'), 'nodes list'), new RegExp(`^ID\\s+NAME\\s+OWNER\\s+IPV4\\s+IPV6\\s+STATUS\\s+ONLINE\\s+LAST SEEN\\n${laptop.id}\\s+laptop\\s+alice\\s+${laptop.ipv4.replace(/\./g, '\\.')}\\s+\\S+\\s+pending\\s+offline`))

    tt.match(ok(tt, await local('nodes', 'approve', 'laptop'), 'approve by name'), /^approved node laptop \(100\./)
    const renamed = json<Node>(await local('nodes', 'rename', laptop.id, 'work-laptop', '--json'))
    tt.equal(renamed.name, 'work-laptop', 'rename by id')
    tt.equal(renamed.status, 'active')
    failsWith(tt, await local('nodes', 'rename', 'work-laptop', 'Bad_Name'), /node name 'Bad_Name' is not DNS-safe/, 'a bad node name')
    tt.match(ok(tt, await local('nodes', 'tag', 'work-laptop', 'tag:web'), 'nodes tag'), /tags tag:web/)
    failsWith(tt, await local('nodes', 'tag', 'work-laptop', 'tag:Web!'), /is not a tag/, 'a bad tag')
    tt.same(json<Node[]>(await local('nodes', 'list', '--json'))[0]!.tags, ['tag:web'], 'the bad tag changed nothing')
    tt.equal(json<Node>(await local('nodes', 'expire', 'work-laptop', '--json')).status, 'expired')
    failsWith(tt, await local('nodes', 'approve', 'no-such-node'), /no-such-node/, 'an unknown node')
    tt.match(ok(tt, await local('nodes', 'delete', 'work-laptop'), 'nodes delete'), /deleted node work-laptop/)
    tt.same(json<Node[]>(await local('nodes', 'list', '--json')), [])
  })

  tt.test('audit records the changes', async tt => {
    const entries = json<AuditEntry[]>(await local('audit', '--json'))
    const actions = entries.map(e => e.action)
    for (const a of ['user.create', 'authkey.create', 'authkey.expire']) tt.ok(actions.includes(a), `audit has ${a}`)
    tt.match(ok(tt, await local('audit', '--limit', '2'), 'audit'), /^TIME\s+ACTOR\s+ACTION\s+TARGET\n(.*\n){2}$/)
  })
})
