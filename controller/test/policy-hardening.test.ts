import t from 'tap'
import { filterAllows } from '@warren/protocol'
import { check, createPolicyEngine, explain, parsePolicy, parseProto, validatePolicy, type Policy } from '../src/policy/index.js'

const users = [{ name: 'alice' }]

function messages (text: string): string[] {
  return parsePolicy(text, { users }).errors.map(e => e.message)
}

function policy (text: string): Policy {
  const r = parsePolicy(text, { users })
  if (r.policy === undefined) throw new Error(r.errors.map(e => e.message).join('\n'))
  return r.policy
}

t.test('names of JavaScript\'s object machinery are refused by name, never looked up', async t => {
  for (const name of ['__proto__', 'constructor', 'prototype']) {
    t.same(messages(`{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"], "proto": "${name}"}]}`).map(m => m.replace(/: use a name.*/, '')),
      [`1:71: unknown proto "${name}"`], `proto ${name} in acls`)
    t.match(messages(`{"tests": [{"src": "alice@", "proto": "${name}", "accept": ["alice@:22"]}]}`), [new RegExp(`unknown proto "${name}"`)], `proto ${name} in tests`)
    t.equal(parseProto(name), undefined)
    t.throws(() => explain(policy('{"acls": []}'), 'alice@', 'alice@', 22, name), { code: 'policy_bad_proto', status: 400 }, `explain's proto ${name}`)
    t.throws(() => check(policy('{"acls": []}'), 'alice@', 'alice@', name, 22), { code: 'policy_bad_proto', status: 400 })
    t.same(messages(`{"${name}": {}, "acls": []}`), [`1:2: unknown key "${name}" in the policy`], `top-level key ${name}`)
    t.match(messages(`{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"], "${name}": 1}]}`), [new RegExp(`unknown key "${name}" in rule 1`)])
    t.match(messages(`{"tests": [{"src": "alice@", "accept": ["alice@:22"], "${name}": []}]}`), [new RegExp(`unknown key "${name}" in test 1`)])
    t.match(messages(`{"hosts": {"${name}": "100.64.0.1"}}`), [new RegExp(`host alias "${name}"`)], `host alias ${name}`)
    t.match(messages(`{"groups": {"${name}": ["alice@"]}}`), [new RegExp(`group name "${name}" must be "group:"`)], `group ${name}`)
    t.match(messages(`{"tagOwners": {"${name}": []}}`), [new RegExp(`tag "${name}" must be "tag:"`)], `tag ${name}`)
    t.match(messages(`{"groups": {"group:${name}": ["alice@"]}}`), name === '__proto__' ? [/group name "group:__proto__" must be/] : [], `group:${name}`)
  }
})

t.test('group:constructor and group:prototype are groups like any other', async t => {
  const p = policy(`{
    "groups": { "group:constructor": ["alice@"], "group:prototype": [] },
    "tagOwners": { "tag:web": ["group:constructor"] },
    "acls": [{ "action": "accept", "src": ["group:constructor", "group:prototype"], "dst": ["tag:web:443"] }],
  }`)
  t.equal(check(p, 'alice@', 'tag:web', 'tcp', 443, { users }).allowed, true)
  t.equal(check(p, 'bob@', 'tag:web', 'tcp', 443, { users }).allowed, false)
})

t.test('deeply nested lists and objects are a parse error, not a stack overflow', async t => {
  for (const [open, close] of [['[', ']'], ['{"a":', '}']]) {
    const text = `{"acls": ${open.repeat(5000)}${close.repeat(5000)}}`
    const r = validatePolicy(text, users)
    t.equal(r.policy, undefined)
    t.match(r.errors.map(e => e.message), [/^1:\d+: lists and objects nest more than 64 levels deep here/])
  }
  const unclosed = `{"acls": ${'['.repeat(100_000)}`
  t.match(messages(unclosed), [/nest more than 64 levels/], 'unclosed, too')
  t.same(messages(`{"acls": [], "tests": [], "hosts": {"x": "${'['.repeat(100)}"}}`).length, 1, 'brackets inside strings do not count')
})

t.test('DCCP and UDP-Lite rules are judged by port, as on the node', async t => {
  for (const proto of [33, 136]) {
    const p = policy(`{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:5000"], "proto": "${proto}"}]}`)
    t.equal(check(p, '100.64.0.1', '100.64.0.2', proto, 5000).allowed, true, `${proto} on the rule's port`)
    t.equal(check(p, '100.64.0.1', '100.64.0.2', proto, 5001).allowed, false, `${proto} on another port`)
    const engine = createPolicyEngine(p, users)
    engine.setNodes([{ id: 'b', name: 'b', user: 'alice', tags: [], ipv4: '100.64.0.2', ipv6: 'fd7a:115c:a1e0::2' }])
    const filter = engine.filterFor('b')
    t.same(filter.map(r => r.ports), [[{ first: 5000, last: 5000 }]], 'the filter keeps the port')
    t.equal(filterAllows(filter, { src: '100.64.0.1', proto, dport: 5000 }), true)
    t.equal(filterAllows(filter, { src: '100.64.0.1', proto, dport: 5001 }), false)
  }
})
