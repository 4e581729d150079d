import t from 'tap'
import fc from 'fast-check'
import { filterAllows, parseIpAddress, parseIpPrefix, prefixContains } from '@warren/protocol'
import { check, createPolicyEngine, parsePolicy, type Policy, type PolicyNode } from '../src/policy/index.js'

/**
 * ipsets: named address sets built by `add` and `remove` in order, named as `ipset:x` in
 * acls and grants; what they compile to, and the refusals a person sees.
 */
function policy (text: string): Policy {
  const r = parsePolicy(text)
  if (r.policy === undefined) throw new Error(r.errors.map(e => e.message).join('\n'))
  return r.policy
}

const cidrsOf = (p: Policy, name: string): string[] => p.ipsets.get(name)!.cidrs.map(c => c.text)

t.test('operations run in order: add, remove, hosts, other sets, both families', async t => {
  const p = policy(`{
    "hosts": { "db": "10.0.9.7" },
    "ipsets": {
      "ipset:prod": ["add 10.0.0.0/22", "remove 10.0.1.0/24", "add db", "add ipset:extra", "remove 10.0.3.128/25"],
      "ipset:extra": ["192.0.2.1", "fd00:1::/64"],
      "ipset:emptied": ["add 10.1.0.0/24", "remove 10.1.0.0/16"],
      "ipset:readded": ["add 10.2.0.0/24", "remove 10.2.0.0/24", "add 10.2.0.5"],
    },
    "acls": [],
  }`)
  t.same(cidrsOf(p, 'ipset:prod'), ['10.0.0.0/24', '10.0.2.0/24', '10.0.3.0/25', '10.0.9.7/32', '192.0.2.1/32', 'fd00:1::/64'])
  t.same(cidrsOf(p, 'ipset:extra'), ['192.0.2.1/32', 'fd00:1::/64'], 'a set of only additions may leave out "add"')
  t.same(cidrsOf(p, 'ipset:emptied'), [], 'removing more than was added leaves nothing')
  t.same(cidrsOf(p, 'ipset:readded'), ['10.2.0.5/32'], 'an add after a remove counts')
})

t.test('the addresses of a set are exactly what the operations leave, in the fewest CIDRs', async t => {
  const op = fc.record({ remove: fc.boolean(), first: fc.integer({ min: 0, max: 255 }), len: fc.integer({ min: 24, max: 32 }) })
  fc.assert(fc.property(fc.array(op, { minLength: 1, maxLength: 8 }), ops => {
    const texts = ops.map(o => `${o.remove ? 'remove' : 'add'} 10.9.0.${o.first}/${o.len}`)
    const p = policy(JSON.stringify({ ipsets: { 'ipset:x': texts }, acls: [] }))
    const cidrs = p.ipsets.get('ipset:x')!.cidrs
    for (let i = 0; i < 256; i++) {
      const a = parseIpAddress(`10.9.0.${i}`)!
      let want = false
      for (const o of ops) if (prefixContains(parseIpPrefix(`10.9.0.${o.first}/${o.len}`)!, a)) want = !o.remove
      if (cidrs.some(c => prefixContains(c, a)) !== want) return false
    }
    // the fewest: no two CIDRs could merge into one
    return cidrs.every((c, i) => cidrs.every((d, j) => i === j || !(c.length === d.length && c.length > 0 &&
      parseIpPrefix(`${c.text.split('/')[0]}/${c.length - 1}`)!.network === parseIpPrefix(`${d.text.split('/')[0]}/${d.length - 1}`)!.network)))
  }), { seed: 0x1b5e7, numRuns: 300 })
})

const web: PolicyNode = { id: 'web', name: 'web', tags: ['tag:web'], ipv4: '100.64.0.5', ipv6: 'fd7a:115c:a1e0::5' }
const TEXT = (rule: string): string => `{
  "tagOwners": { "tag:web": [] },
  "ipsets": { "ipset:office": ["add 192.0.2.0/24", "remove 192.0.2.66"], "ipset:web": ["100.64.0.5"] },
  ${rule}
}`

t.test('a set as the source of an acl or a grant admits exactly its addresses', async t => {
  for (const rule of [
    '"acls": [{ "action": "accept", "src": ["ipset:office"], "dst": ["tag:web:443"] }]',
    '"grants": [{ "src": ["ipset:office"], "dst": ["tag:web"], "ip": ["tcp:443"] }]'
  ]) {
    const engine = createPolicyEngine(policy(TEXT(rule)), [])
    engine.setNodes([web])
    const allows = (src: string): boolean => filterAllows(engine.filterFor('web'), { src, proto: 6, dport: 443 })
    t.ok(allows('192.0.2.1') && allows('192.0.2.67') && allows('192.0.2.255'), `${rule}: the office reaches web`)
    t.notOk(allows('192.0.2.66'), `${rule}: the removed address does not`)
    t.notOk(allows('192.0.3.1'), `${rule}: nor one outside the set`)
    t.notOk(filterAllows(engine.filterFor('web'), { src: '192.0.2.1', proto: 6, dport: 22 }), `${rule}: on 443 only`)
  }
})

t.test('a set as a destination opens the nodes whose address is in it', async t => {
  const p = policy(TEXT('"acls": [{ "action": "accept", "src": ["*"], "dst": ["ipset:web:80"] }]'))
  const other: PolicyNode = { id: 'other', name: 'other', tags: [], user: 'alice', ipv4: '100.64.0.6', ipv6: 'fd7a:115c:a1e0::6' }
  const engine = createPolicyEngine(p, [])
  engine.setNodes([web, other])
  t.ok(filterAllows(engine.filterFor('web'), { src: '100.64.0.6', proto: 6, dport: 80 }))
  t.same(engine.filterFor('other'), [])
  t.same([...engine.peersOf('other')], ['web'])
  t.equal(check(p, '100.64.0.6', '100.64.0.5', 'tcp', 80, { nodes: [web, other] }).allowed, true, 'check agrees')
})

t.test('bad ipsets are refused with where and how to fix it', async t => {
  const refusals: Array<[string, string]> = [
    ['"ipsets": { "ipset:a": ["add ipset:b"], "ipset:b": ["add ipset:a"] }', 'IP sets cannot contain themselves: ipset:a -> ipset:b -> ipset:a'],
    ['"ipsets": { "ipset:a": ["add ipset:a"] }', 'IP sets cannot contain themselves: ipset:a -> ipset:a'],
    ['"ipsets": { "office": ["10.0.0.1"] }', 'IP set name "office" must be "ipset:" and a name (for example ipset:office)'],
    ['"ipsets": { "ipset:a": ["10.0.0.0/8", "remove 10.1.0.0/16"] }', 'ipset:a removes addresses, so each target needs its operation (write "add 10.0.0.0/8")'],
    ['"ipsets": { "ipset:a": ["add tag:web"] }', 'ipset:a: "tag:web" cannot be in an IP set: IP sets hold addresses, CIDRs, hosts and other IP sets, not users, groups or tags'],
    ['"ipsets": { "ipset:a": ["add alice@example.com"] }', 'cannot be in an IP set'],
    ['"ipsets": { "ipset:a": ["delete 10.0.0.1"] }', 'ipset:a: "delete 10.0.0.1" is not an operation: write "add TARGET" or "remove TARGET"'],
    ['"ipsets": { "ipset:a": ["add nowhere"] }', 'ipset:a: "nowhere" is not an address, a CIDR, a host in "hosts" or an ipset:'],
    ['"ipsets": { "ipset:a": ["add ipset:nope"] }', 'ipset:a: IP set ipset:nope is not defined in "ipsets"'],
    ['"ipsets": { "ipset:a": ["add autogroup:internet"] }', 'autogroup:internet cannot be in an IP set: it is the internet through exit nodes, not a set of addresses; write it in a rule\'s dst'],
    ['"ipsets": { "ipset:office": ["10.0.0.1"] }, "acls": [{ "action": "accept", "src": ["ipset:ofice"], "dst": ["*:*"] }]',
      'IP set ipset:ofice is not defined in "ipsets" (did you mean ipset:office?)'],
    ['"ipsets": { "ipset:a": ["10.0.0.1"] }, "acls": [{ "action": "accept", "src": ["*"], "dst": ["ipset:a"] }]',
      'dst "ipset:a" has no ports: write it as alias:ports (for example ipset:a:* or ipset:a:22)'],
    ['"ipsets": { "ipset:a": ["10.0.0.1"] }, "grants": [{ "src": ["*"], "dst": ["ipset:a:22"], "ip": ["*"] }]',
      'dst "ipset:a:22" has ports, but a grant\'s destinations name only hosts']
  ]
  for (const [body, want] of refusals) {
    const r = parsePolicy(`{\n  ${body}\n}`)
    t.equal(r.policy, undefined, body)
    const messages = r.errors.map(e => e.message)
    t.ok(messages.some(m => m.includes(want)), `${body}:\n${messages.join('\n')}`)
    t.ok(messages.every(m => /^2:\d+: /.test(m)), `${body}: each error says where`)
  }
})
