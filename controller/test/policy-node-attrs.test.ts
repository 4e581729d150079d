import t from 'tap'
import { createPolicyEngine, emailResolution, parsePolicy, validatePolicy, type Policy, type PolicyNode } from '../src/policy/index.js'

/**
 * nodeAttrs and randomizeClientPort: which nodes get which attributes, how a policy change
 * reports the nodes whose attributes changed, and the refusals and warnings a person sees.
 */
const users = [{ name: 'alice', email: 'alice@example.com' }, { name: 'bob', email: 'bob@example.org' }]

const alice: PolicyNode = { id: 'alice', name: 'alice-laptop', user: 'alice', tags: [], ipv4: '100.64.0.1', ipv6: 'fd7a:115c:a1e0::1' }
const bob: PolicyNode = { id: 'bob', name: 'bob-laptop', user: 'bob', tags: [], ipv4: '100.64.0.2', ipv6: 'fd7a:115c:a1e0::2' }
const server: PolicyNode = { id: 'server', name: 'server', tags: ['tag:server'], ipv4: '100.64.0.3', ipv6: 'fd7a:115c:a1e0::3' }
const NODES = [alice, bob, server]

function policy (body: string): Policy {
  const r = parsePolicy(`{ "groups": { "group:eng": ["alice@"] }, "tagOwners": { "tag:server": ["alice@"] }, "hosts": { "srv": "100.64.0.3" }, ${body} }`, { users })
  if (r.policy === undefined) throw new Error(r.errors.map(e => e.message).join('\n'))
  return r.policy
}

function attrsOf (p: Policy): Record<string, string[]> {
  const engine = createPolicyEngine(p, users)
  engine.setNodes(NODES)
  return Object.fromEntries(NODES.map(n => [n.id, Object.keys(engine.attrsFor(n.id))]))
}

t.test('each target kind names the nodes that get an attribute', async t => {
  const cases: Array<[string, string[]]> = [
    ['"*"', ['alice', 'bob', 'server']],
    ['"alice@"', ['alice']],
    ['"bob@example.org"', ['bob']],
    ['"group:eng"', ['alice']],
    ['"tag:server"', ['server']],
    ['"autogroup:member"', ['alice', 'bob']],
    ['"autogroup:tagged"', ['server']],
    ['"srv"', ['server']],
    ['"100.64.0.2/32"', ['bob']],
    ['"fd7a:115c:a1e0::1"', ['alice']]
  ]
  for (const [target, want] of cases) {
    const got = attrsOf(policy(`"nodeAttrs": [{ "target": [${target}], "attr": ["custom:x"] }]`))
    t.same(Object.keys(got).filter(id => got[id]!.includes('custom:x')), want, `target ${target}`)
  }
})

t.test('a node gets the union of its entries, each name once, and app capabilities with their values', async t => {
  const engine = createPolicyEngine(policy(`"nodeAttrs": [
    { "target": ["*"], "attr": ["randomize-client-port"] },
    { "target": ["tag:server"], "attr": ["randomize-client-port", "custom:b"], "app": { "example.com/cap/x": [{ "level": 1 }] } },
    { "target": ["srv"], "app": { "example.com/cap/x": [{ "level": 2 }] } },
  ]`), users)
  engine.setNodes(NODES)
  t.same(engine.attrsFor('server'), { 'custom:b': [], 'example.com/cap/x': [{ level: 1 }, { level: 2 }], 'randomize-client-port': [] })
  t.same(engine.attrsFor('alice'), { 'randomize-client-port': [] })
  t.same(engine.attrsFor('nobody'), {}, 'an unknown node has none')
})

t.test('randomizeClientPort: true gives every node randomize-client-port; false gives nothing', async t => {
  t.same(attrsOf(policy('"randomizeClientPort": true')), { alice: ['randomize-client-port'], bob: ['randomize-client-port'], server: ['randomize-client-port'] })
  t.same(attrsOf(policy('"randomizeClientPort": false')), { alice: [], bob: [], server: [] })
})

t.test('a policy change names exactly the nodes whose attributes changed', async t => {
  const engine = createPolicyEngine(policy('"acls": []'), users)
  engine.setNodes(NODES)
  t.same([...engine.setPolicy(policy('"acls": [], "nodeAttrs": [{ "target": ["tag:server"], "attr": ["custom:x"] }]'), users)], ['server'])
  t.same(engine.attrsFor('server'), { 'custom:x': [] })
  t.same([...engine.setPolicy(policy('"acls": [], "nodeAttrs": [{ "target": ["tag:server"], "attr": ["custom:x"] }]'), users)], [], 'the same attributes: no change')
  t.same([...engine.setPolicy(policy('"acls": []'), users)], ['server'])
  t.same(engine.attrsFor('server'), {})
  // a node that takes the tag takes its attributes
  engine.setPolicy(policy('"acls": [], "nodeAttrs": [{ "target": ["tag:server"], "attr": ["custom:x"] }]'), users)
  engine.upsertNode({ ...bob, tags: ['tag:server'] })
  t.same(engine.attrsFor('bob'), { 'custom:x': [] })
})

t.test('a user change that changes whom a target\'s email names is a change the controller recompiles for', async t => {
  const p = policy('"acls": [], "nodeAttrs": [{ "target": ["carol@example.com"], "attr": ["custom:x"] }]')
  const carol = { name: 'carol', email: 'carol@example.com' }
  t.not(emailResolution(p, [...users, carol]), emailResolution(p, users), 'carol appearing changes who the target is')
  t.equal(emailResolution(p, [...users, { name: 'dave', email: 'dave@example.com' }]), emailResolution(p, users), 'another user does not')
})

t.test('Tailscale-only attributes are accepted with one warning naming each; Warren\'s, built-in and custom ones without', async t => {
  const r = validatePolicy(`{ "tagOwners": { "tag:server": [] }, "nodeAttrs": [
    { "target": ["*"], "attr": ["funnel", "drive:share", "nextdns:abc123", "randomize-client-port", "magicdns-aaaa", "custom:mine", "https://example.com/cap/x"] },
    { "target": ["tag:server"], "attr": ["funnel", "mullvad"] },
  ] }`, users)
  t.ok(r.policy !== undefined, r.errors.map(e => e.message).join('\n'))
  const attrWarnings = r.warnings.map(w => w.message).filter(m => m.includes('attribute'))
  t.same(attrWarnings.map(m => /"([^"]+)"/.exec(m)?.[1]), ['funnel', 'drive:share', 'nextdns:abc123', 'mullvad'])
  t.match(attrWarnings[0], /^2:\d+: attribute "funnel" is a Tailscale feature Warren does not have/)
})

t.test('bad nodeAttrs are refused with where and what to write, and nothing is applied', async t => {
  const refusals: Array<[string, RegExp]> = [
    ['"nodeAttrs": {}', /nodeAttrs must be a list/],
    ['"nodeAttrs": [{ "attr": ["x"] }]', /nodeAttrs\[0\] has no "target": add "target": \["tag:server"\]/],
    ['"nodeAttrs": [{ "target": ["tag:nope"], "attr": ["x"] }]', /tag tag:nope has no entry in "tagOwners"/],
    ['"nodeAttrs": [{ "target": ["%bogus%"], "attr": ["x"] }]', /"%bogus%" is not a known alias/],
    ['"nodeAttrs": [{ "target": ["autogroup:self"], "attr": ["x"] }]', /autogroup:self names no node by itself.*use autogroup:member/],
    ['"nodeAttrs": [{ "target": ["*"], "attr": [""] }]', /nodeAttrs\[0\]\.attr has an empty attribute name/],
    ['"nodeAttrs": [{ "target": ["*"], "attr": "x" }]', /nodeAttrs\[0\]\.attr must be a list/],
    ['"nodeAttrs": [{ "target": ["*"], "atr": ["x"] }]', /unknown key "atr" in nodeAttrs\[0\] \(did you mean attr\?\)/],
    ['"nodeAttrs": [{ "target": ["*"], "app": { "example.com/cap/x": ["yes"] } }]', /each value of nodeAttrs\[0\]\.app\["example.com\/cap\/x"\] must be an object/],
    ['"nodeAttrs": [{ "target": ["*"], "ipPool": ["100.81.0.0/16"] }]', /ipPool: address pools are not supported by Warren/],
    ['"randomizeClientPort": "yes"', /randomizeClientPort must be true or false/]
  ]
  for (const [body, want] of refusals) {
    const r = parsePolicy(`{ "tagOwners": { "tag:server": [] }, ${body} }`, { users })
    t.equal(r.policy, undefined, body)
    t.match(r.errors.map(e => e.message).join('\n'), want, body)
    t.match(r.errors[0]?.message, /^\d+:\d+: /, `${body}: the error says where`)
  }
})

t.test('an entry without attr and an empty target are accepted and give nothing, as in Tailscale', async t => {
  t.same(attrsOf(policy('"nodeAttrs": [{ "target": ["*"] }, { "target": [], "attr": ["custom:x"] }]')), { alice: [], bob: [], server: [] })
})
