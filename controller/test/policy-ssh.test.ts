import t, { type Test } from 'tap'
import { filterAllows } from '@warren/protocol'
import { compileSshPolicy, createPolicyEngine, parsePolicy, validatePolicy, type Policy, type PolicyNode } from '../src/policy/index.js'
import { parseDuration } from '../src/policy/ssh-parse.js'

// Tailscale's `ssh` and `sshTests` sections: checked as Tailscale checks them, compiled
// per node into the rules Tailscale would send, tests run like `tests`. The corpus
// (policy-conformance.test.ts) holds the compiled rules to Tailscale's own; these
// tests pin Warren's messages and the cases the corpus leaves out.

const users = [{ name: 'alice', email: 'alice@example.com' }, { name: 'bob', email: 'bob@example.com' }, { name: 'carol', email: 'carol@example.org' }]
const OWNERS = '"tagOwners": { "tag:server": ["alice@"], "tag:ci": ["alice@"] }, "groups": { "group:ops": ["alice@", "bob@"] }, "hosts": { "srv": "100.64.0.1" }'

const server: PolicyNode = { id: 'server', name: 'server', tags: ['tag:server'], ipv4: '100.64.0.1', ipv6: 'fd7a:115c:a1e0::1' }
const ci: PolicyNode = { id: 'ci', name: 'ci', tags: ['tag:ci'], ipv4: '100.64.0.2', ipv6: 'fd7a:115c:a1e0::2' }
const alice1: PolicyNode = { id: 'alice1', name: 'alice1', user: 'alice', tags: [], ipv4: '100.64.0.3', ipv6: 'fd7a:115c:a1e0::3' }
const alice2: PolicyNode = { id: 'alice2', name: 'alice2', user: 'alice', tags: [], ipv4: '100.64.0.4', ipv6: 'fd7a:115c:a1e0::4' }
const bob1: PolicyNode = { id: 'bob1', name: 'bob1', user: 'bob', tags: [], ipv4: '100.64.0.5', ipv6: 'fd7a:115c:a1e0::5' }
const NODES = [server, ci, alice1, alice2, bob1]

function text (ssh: string, extra = ''): string {
  return `{ ${OWNERS}, "acls": [], "ssh": ${ssh}${extra} }`
}

function policy (ssh: string): Policy {
  const r = parsePolicy(text(ssh), { users })
  if (r.policy === undefined) throw new Error(r.errors.map(e => e.message).join('\n'))
  return r.policy
}

function errors (ssh: string, extra = ''): string[] {
  return validatePolicy(text(ssh, extra), users, NODES).errors.map(e => e.message)
}

/** exactly asserts one message per pattern, each matching (t.match alone lets extra messages through). */
function exactly (t: Test, got: readonly string[], patterns: readonly RegExp[], what = 'messages'): void {
  t.equal(got.length, patterns.length, `${what}: ${got.join(' | ')}`)
  t.match(got, patterns, what)
}

/** rulesOn lists a node's compiled rules as `action users from principals` lines. */
function rulesOn (ssh: string, node: PolicyNode): string[] {
  return compileSshPolicy(policy(ssh), users, NODES).get(node.id)!.map(r =>
    `${r.action} ${JSON.stringify(r.sshUsers)} from ${r.principals.filter(p => !p.includes(':')).join(',')}`)
}

t.test('check and set say plainly that ssh rules grant nothing yet', async t => {
  const r = parsePolicy(text('[{ "action": "accept", "src": ["group:ops"], "dst": ["tag:server"], "users": ["root"] }]'), { users })
  t.same(r.errors, [])
  exactly(t, r.warnings.map(w => w.message), [/grant nothing yet: Warren has no SSH server, so no node enforces them; who may reach port 22 stays decided by acls and grants$/])
  t.same(parsePolicy(text('[]'), { users }).warnings, [], 'an empty ssh section has nothing to warn about')
})

t.test('ssh rules open no port: who reaches port 22 stays decided by acls and grants', async t => {
  const reaches22 = (p: Policy): boolean => {
    const engine = createPolicyEngine(p, users)
    engine.setNodes(NODES)
    return filterAllows(engine.filterFor(server.id), { src: alice1.ipv4, proto: 6, dport: 22 })
  }
  const ssh = '[{ "action": "accept", "src": ["alice@"], "dst": ["tag:server"], "users": ["root"] }]'
  t.notOk(reaches22(policy(ssh)), 'an ssh rule alone opens nothing')
  const withAcl = parsePolicy(`{ ${OWNERS}, "acls": [{ "action": "accept", "src": ["alice@"], "dst": ["tag:server:22"] }], "ssh": ${ssh} }`, { users }).policy!
  t.ok(reaches22(withAcl), 'an acl to port 22 opens it')
})

t.test('bad ssh rules are refused with the place and the fix', async t => {
  const rule = (fields: string): string => `[{ "src": ["group:ops"], "dst": ["tag:server"], ${fields} }]`
  exactly(t, errors(rule('"users": ["root"]')), [/ssh rule 1 \(ssh\[0\]\): action must be specified: "accept" or "check"$/])
  exactly(t, errors(rule('"action": "Accept", "users": ["root"]')), [/"Accept" is not a valid action: write "accept" or "check" \(lowercase\) \(did you mean accept\?\)$/])
  exactly(t, errors(rule('"action": "accept", "users": []')), [/users must be specified: list the login names/])
  exactly(t, errors(rule('"action": "accept", "users": ["root", "*"]')), [/user "\*" is not valid: for every login name but root write autogroup:nonroot/])
  exactly(t, errors(rule('"action": "accept", "users": [" "]')), [/user "" is not valid/])
  exactly(t, errors(rule('"action": "accept", "users": ["localpart:*@*"]')), [/"localpart:\*@\*": \* is not a domain/])
  exactly(t, errors(rule('"action": "check", "checkPeriod": "abc", "users": ["root"]')), [/checkPeriod "abc" is not a duration: write "always" or a duration such as 12h/])
  exactly(t, errors(rule('"action": "check", "checkPeriod": "-1m", "users": ["root"]')), [/checkPeriod -1m must be a positive duration/])
  exactly(t, errors(rule('"action": "check", "checkPeriod": "168h0m1s", "users": ["root"]')), [/checkPeriod 168h0m1s is above the max \(168h\)/])
  exactly(t, errors(rule('"action": "accept", "users": ["root"], "acceptEnv": ["TERM", ""]')), [/acceptEnv values cannot be empty/])
  const first = errors('[{ "action": "accept", "src": ["*"], "dst": ["srv"], "users": ["root"] }]')
  exactly(t, first, [/^1:\d+: ssh rule 1 \(ssh\[0\]\): invalid src "\*": an ssh source is a user, group, tag/,
    /invalid dst "srv": an ssh destination is autogroup:self, a tag, autogroup:tagged or a user \(tag the device and name the tag\)$/])
})

t.test('which sources may reach which destinations, as in Tailscale', async t => {
  exactly(t, errors('[{ "action": "accept", "src": ["tag:ci"], "dst": ["autogroup:self"], "users": ["root"] }]'),
    [/"tag:ci" cannot reach autogroup:self, which means the source user's own devices/])
  exactly(t, errors('[{ "action": "accept", "src": ["bob@"], "dst": ["alice@example.com"], "users": ["root"] }]'),
    [/"bob@" cannot SSH into alice@example.com's devices: a user destination takes only that same user as the source/])
  t.same(errors('[{ "action": "accept", "src": ["alice@"], "dst": ["alice@example.com"], "users": ["root"] }]'), [],
    'a user may SSH into their own devices, however the user is written')
  t.same(errors('[{ "action": "accept", "src": ["tag:ci"], "dst": ["tag:server"], "users": ["deploy"] }]'), [], 'tags to tags')
})

t.test('login names that Tailscale takes literally are kept, with a warning', async t => {
  const r = parsePolicy(text('[{ "action": "accept", "src": ["alice@"], "dst": ["tag:server"], "users": ["localpart:foo", "group:ops", "localpart:*@nowhere.example"] }]'), { users })
  t.same(r.errors, [])
  exactly(t, r.warnings.map(w => w.message), [/grant nothing yet/, /"localpart:foo" is taken as a literal login name/, /"group:ops" is taken as a literal login name/,
    /no user has an email in nowhere.example yet/])
  t.same(rulesOn('[{ "action": "accept", "src": ["alice@"], "dst": ["tag:server"], "users": ["__proto__"] }]', server),
    ['accept {"root":"","__proto__":"__proto__"} from 100.64.0.3,100.64.0.4'], 'a login name is data, never an object key with a meaning')
})

t.test('each node gets the rules that name it, with the login-name map', async t => {
  t.same(rulesOn('[{ "action": "accept", "src": ["group:ops"], "dst": ["tag:server"], "users": ["root", "ubuntu"] }]', server),
    ['accept {"root":"root","ubuntu":"ubuntu"} from 100.64.0.3,100.64.0.4,100.64.0.5'])
  t.same(rulesOn('[{ "action": "accept", "src": ["group:ops"], "dst": ["tag:server"], "users": ["autogroup:nonroot"] }]', server),
    ['accept {"*":"=","root":""} from 100.64.0.3,100.64.0.4,100.64.0.5'], 'autogroup:nonroot: any name but root')
  t.same(rulesOn('[{ "action": "accept", "src": ["group:ops"], "dst": ["tag:server"], "users": ["root"] }]', alice1), [], 'a node no rule names gets none')
  t.same(rulesOn('[{ "action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self"], "users": ["root"] }]', alice2),
    ['accept {"root":"root"} from 100.64.0.3,100.64.0.4'], 'autogroup:self: the user\'s own devices only')
  t.same(rulesOn('[{ "action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self"], "users": ["root"] }]', server), [], 'a tagged node is nobody\'s own device')
  t.same(rulesOn(`[{ "action": "accept", "src": ["alice@"], "dst": ["tag:server"], "users": ["root"] },
    { "action": "check", "checkPeriod": "1h", "src": ["alice@"], "dst": ["tag:server"], "users": ["root"] }]`, server),
  ['check {"root":"root"} from 100.64.0.3,100.64.0.4', 'accept {"root":"root"} from 100.64.0.3,100.64.0.4'], 'check rules come first, as a node applies the first match')
  t.same(compileSshPolicy(policy('[{ "action": "check", "src": ["alice@"], "dst": ["tag:server"], "users": ["root"] }]'), users, NODES).get('server')!.map(r => r.checkPeriodSeconds),
    [12 * 3600], 'a check holds 12 hours unless the rule says')
})

t.test('localpart:*@domain lets each user of the domain log in as their own name', async t => {
  t.same(rulesOn('[{ "action": "accept", "src": ["autogroup:member"], "dst": ["tag:server"], "users": ["localpart:*@example.com"] }]', server), [
    'accept {"root":""} from 100.64.0.3,100.64.0.4',
    'accept {"alice":"alice"} from 100.64.0.3,100.64.0.4',
    'accept {"root":""} from 100.64.0.5',
    'accept {"bob":"bob"} from 100.64.0.5'
  ], 'one rule per source user, in the order of the users, each followed by that user\'s own name')
})

t.test('sshTests pass, or refuse the policy saying what was expected and which rule decides', async t => {
  const ssh = '[{ "action": "accept", "src": ["group:ops"], "dst": ["tag:server"], "users": ["root"] }, { "action": "check", "src": ["alice@"], "dst": ["tag:ci"], "users": ["autogroup:nonroot"] }]'
  const tests = (list: string): string => `, "sshTests": ${list}`
  t.same(errors(ssh, tests('[{ "src": "group:ops", "dst": ["tag:server", "srv", "100.64.0.1"], "accept": ["root"], "deny": ["ubuntu"] }, { "src": "alice@", "dst": ["tag:ci"], "check": ["deploy"], "deny": ["root"] }]')), [],
    'a group holds for each member; a host alias or address stands for the device that has it')
  exactly(t, errors(ssh, tests('[{ "src": "bob@", "dst": ["tag:ci"], "accept": ["deploy"] }]')),
    [/^1:\d+: ssh test 1: bob@ -> tag:ci as deploy expected accept but no ssh rule lets it in$/])
  exactly(t, errors(ssh, tests('[{ "src": "alice@", "dst": ["tag:ci"], "accept": ["deploy"] }]')),
    [/ssh test 1: alice@ -> tag:ci as deploy expected accept but ssh rule 2 \(line 1\) lets it in after a check$/])
  exactly(t, errors(ssh, tests('[{ "src": "group:ops", "dst": ["tag:server"], "deny": ["root"] }]')), [
    /ssh test 1: group:ops \(alice@\) -> tag:server as root expected deny but ssh rule 1 \(line 1\) lets it in without a check$/,
    /ssh test 1: group:ops \(bob@\) -> tag:server as root expected deny/
  ])
  exactly(t, errors(ssh, tests('[{ "src": "alice@", "dst": ["tag:server"] }]')), [/ssh test 1 \(sshTests\[0\]\) tests nothing: list login names in "accept", "check" or "deny"/])
  exactly(t, errors(ssh, tests('[{ "src": "alice@", "dst": ["100.64.0.0/24", "autogroup:member"], "accept": ["root"] }]')),
    [/tests name one address, not the range 100.64.0.0\/24/, /tests name one identity, not autogroup:member/])
})

t.test('localpart in sshTests: only users of the domain, as their own name', async t => {
  const ssh = '[{ "action": "accept", "src": ["autogroup:member"], "dst": ["tag:server"], "users": ["localpart:*@example.com"] }]'
  t.same(errors(ssh, ', "sshTests": [{ "src": "alice@", "dst": ["tag:server"], "accept": ["alice"], "deny": ["bob", "root"] }]'), [])
  exactly(t, errors(ssh, ', "sshTests": [{ "src": "carol@", "dst": ["tag:server"], "accept": ["carol"] }]'), [/carol@ -> tag:server as carol expected accept but no ssh rule lets it in/])
})

t.test('checkPeriod reads Go durations', async t => {
  t.same([parseDuration('12h'), parseDuration('1h30m'), parseDuration('90s'), parseDuration('0'), parseDuration('1.5h'), parseDuration('-1m')], [43200, 5400, 90, 0, 5400, -60])
  t.same([parseDuration('abc'), parseDuration('12'), parseDuration('1h 2m'), parseDuration('')], [undefined, undefined, undefined, undefined])
})
