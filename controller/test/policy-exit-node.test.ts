import t from 'tap'
import { forwardAllows, filterAllows } from '@warren/protocol'
import { autoApprovedRoutes, createPolicyEngine, parsePolicy, type Policy, type PolicyNode } from '../src/policy/index.js'
import { INTERNET_RANGES, NOT_INTERNET, subtractPrefixes } from '../src/policy/internet.js'
import { parseCidr } from '../src/policy/addr.js'

/**
 * Exit nodes in the policy: autogroup:internet (and `*`) let sources use an approved exit
 * node, which becomes their peer and forwards them to internet addresses only; without
 * such a rule the exit node is neither a peer nor forwards anything.
 */
const users = [{ name: 'alice', email: 'alice@example.com' }, { name: 'bob' }]

function parse (text: string): ReturnType<typeof parsePolicy> {
  return parsePolicy(text, { users })
}
function policy (text: string): Policy {
  const r = parse(text)
  if (r.policy === undefined) throw new Error(r.errors.map(e => e.message).join('\n'))
  return r.policy
}

const alice: PolicyNode = { id: 'alice', name: 'alice-laptop', user: 'alice', tags: [], ipv4: '100.64.0.1', ipv6: 'fd7a:115c:a1e0::1' }
const bob: PolicyNode = { id: 'bob', name: 'bob-laptop', user: 'bob', tags: [], ipv4: '100.64.0.2', ipv6: 'fd7a:115c:a1e0::2' }
const exit: PolicyNode = {
  id: 'exit', name: 'exit', tags: ['tag:exit'], ipv4: '100.64.0.3', ipv6: 'fd7a:115c:a1e0::3',
  advertisedRoutes: ['0.0.0.0/0', '::/0'], approvedRoutes: ['0.0.0.0/0', '::/0']
}

const head = '"tagOwners": { "tag:exit": ["alice@"] }'

t.test('autogroup:internet lets its sources use the exit node, to internet addresses only', async t => {
  const engine = createPolicyEngine(policy(`{ ${head}, "acls": [{ "action": "accept", "src": ["alice@"], "dst": ["autogroup:internet:443"], "proto": "tcp" }] }`), users)
  engine.setNodes([alice, bob, exit])
  const filter = engine.filterFor('exit')
  const pass = (src: string, dst: string, dport = 443): boolean => forwardAllows(filter, { src, dst, dport, proto: 6 })
  t.ok(pass('100.64.0.1', '203.0.113.9'), 'alice -> an internet address:443')
  t.ok(pass('fd7a:115c:a1e0::1', '2001:db8::9'), 'and over IPv6')
  t.notOk(pass('100.64.0.1', '203.0.113.9', 80), 'not on another port')
  t.notOk(pass('100.64.0.2', '203.0.113.9'), 'not bob')
  for (const dst of ['192.168.1.9', '10.1.2.3', '172.16.0.1', '100.64.0.2', '127.0.0.1', '169.254.1.1', 'fd7a:115c:a1e0::2', 'fe80::1']) {
    t.notOk(pass('100.64.0.1', dst) || pass('fd7a:115c:a1e0::1', dst), `the exit node's LAN and the mesh are not the internet (${dst})`)
  }
  t.notOk(filterAllows(filter, { src: '100.64.0.1', proto: 6, dport: 443 }), 'nothing reaches the exit node itself')
  t.same([...engine.peersOf('exit')], ['alice'], 'the exit node is a peer of its users only')
  t.ok(engine.peersOf('alice').has('exit'))
  t.notOk(engine.peersOf('bob').has('exit'))
})

t.test('without autogroup:internet or *, an exit node forwards nothing; * includes the internet', async t => {
  const none = createPolicyEngine(policy(`{ ${head}, "acls": [{ "action": "accept", "src": ["alice@"], "dst": ["bob@:*"] }] }`), users)
  none.setNodes([alice, bob, exit])
  t.same(none.filterFor('exit'), [], 'no forward rules')
  t.notOk(none.peersOf('alice').has('exit'), 'and not a peer')
  const all = createPolicyEngine(policy(`{ ${head}, "acls": [{ "action": "accept", "src": ["*"], "dst": ["*:*"] }] }`), users)
  all.setNodes([alice, bob, exit])
  t.ok(forwardAllows(all.filterFor('exit'), { src: '100.64.0.2', dst: '198.51.100.1', proto: 17, dport: 53 }), '* -> *:* reaches the internet')
  t.notOk(forwardAllows(all.filterFor('exit'), { src: '100.64.0.2', dst: '192.168.0.1', proto: 17, dport: 53 }), 'but not the exit node\'s LAN')
  const unapproved = createPolicyEngine(policy(`{ ${head}, "acls": [{ "action": "accept", "src": ["alice@"], "dst": ["autogroup:internet:*"] }] }`), users)
  unapproved.setNodes([alice, { ...exit, approvedRoutes: [] }])
  t.same(unapproved.filterFor('exit'), [], 'an exit node not approved forwards nothing')
  t.notOk(unapproved.peersOf('alice').has('exit'))
  const change = unapproved.upsertNode(exit)
  t.ok(change.peersGained.has('alice') && change.filterChanged.has('exit'), 'approval makes it a peer and gives it its filter')
})

t.test('autogroup:internet is a destination, in acls and grants; grants name it instead of 0.0.0.0/0', async t => {
  const grant = createPolicyEngine(policy(`{ ${head}, "grants": [{ "src": ["bob@"], "dst": ["autogroup:internet"], "ip": ["udp:53"] }] }`), users)
  grant.setNodes([alice, bob, exit])
  t.ok(forwardAllows(grant.filterFor('exit'), { src: '100.64.0.2', dst: '9.9.9.9', proto: 17, dport: 53 }))
  const messages = (text: string): string => (parse(text).errors ?? []).map(e => e.message).join('\n')
  t.match(messages(`{ ${head}, "acls": [{ "action": "accept", "src": ["autogroup:internet"], "dst": ["*:*"] }] }`), /autogroup:internet can only be used as a destination/)
  t.match(messages('{ "grants": [{ "src": ["*"], "dst": ["0.0.0.0/0"], "ip": ["*"] }] }'), /use "\*" or "autogroup:internet"/)
})

t.test('a grant with via uses only the exit nodes with its tags', async t => {
  const exitB: PolicyNode = { ...exit, id: 'exit-b', name: 'exit-b', tags: ['tag:exit-b'], ipv4: '100.64.0.4', ipv6: 'fd7a:115c:a1e0::4' }
  const viaHead = '"tagOwners": { "tag:exit": ["alice@"], "tag:exit-b": ["alice@"] }'
  const engine = createPolicyEngine(policy(`{ ${viaHead}, "grants": [
    { "src": ["alice@"], "dst": ["autogroup:internet"], "ip": ["tcp:443"], "via": ["tag:exit"] },
    { "src": ["bob@"], "dst": ["autogroup:internet"], "ip": ["*"], "via": ["tag:exit-b"] }] }`), users)
  engine.setNodes([alice, bob, exit, exitB])
  const pass = (node: string, src: string, dst: string, dport = 443): boolean => forwardAllows(engine.filterFor(node), { src, dst, dport, proto: 6 })
  t.ok(pass('exit', '100.64.0.1', '203.0.113.9'), 'the tag:exit node forwards alice to the internet')
  t.ok(pass('exit', 'fd7a:115c:a1e0::1', '2001:db8::9'), 'over IPv6 too')
  t.notOk(pass('exit', '100.64.0.1', '203.0.113.9', 80), 'on the grant\'s ports only')
  t.notOk(pass('exit-b', '100.64.0.1', '203.0.113.9'), 'the exit node without tag:exit does not forward alice')
  t.ok(pass('exit-b', '100.64.0.2', '203.0.113.9', 80), 'it forwards bob, whose grant names its tag')
  t.notOk(pass('exit', '100.64.0.2', '203.0.113.9', 80), 'and tag:exit does not forward bob')
  t.notOk(pass('exit', '100.64.0.1', '192.168.1.9'), 'via does not widen autogroup:internet: the exit node\'s LAN stays out')
  t.same([...engine.peersOf('alice')], ['exit'], 'alice gets only the tag:exit node as a peer')
  t.same([...engine.peersOf('bob')], ['exit-b'], 'bob gets only the tag:exit-b node')
  t.same([...engine.peersOf('exit')], ['alice'])
  const change = engine.upsertNode({ ...exitB, tags: ['tag:exit', 'tag:exit-b'] })
  t.ok(change.peersGained.has('alice') && change.filterChanged.has('exit-b'), 'an exit node that gains the tag becomes a peer and forwards')
  t.ok(pass('exit-b', '100.64.0.1', '203.0.113.9'))
  const dropped = engine.upsertNode({ ...exit, tags: ['tag:exit-b'] })
  t.ok(dropped.peersLost.has('alice') && dropped.filterChanged.has('exit'), 'one that loses it stops')
  t.notOk(pass('exit', '100.64.0.1', '203.0.113.9'))
})

t.test('via with autogroup:internet mixes with address ranges; other destinations with via are refused', async t => {
  const text = (dst: string): string => `{ ${head}, "grants": [{ "src": ["alice@"], "dst": [${dst}], "ip": ["*"], "via": ["tag:exit"] }] }`
  t.same(parse(text('"autogroup:internet", "10.9.0.0/16"')).errors, [], 'autogroup:internet and a range in one via grant')
  t.match(parse(text('"autogroup:internet", "bob@"')).errors.map(e => e.message), [/"bob@" is not an address range or autogroup:internet/])
})

t.test('autoApprovers.exitNode approves both default routes of the nodes it names, and nothing else', async t => {
  const p = policy(`{ ${head}, "autoApprovers": { "routes": { "0.0.0.0/0": ["alice@"] }, "exitNode": ["tag:exit"] } }`)
  t.same(autoApprovedRoutes(p, { ...exit, approvedRoutes: [] }, users), ['0.0.0.0/0', '::/0'], 'the tagged exit node')
  t.same(autoApprovedRoutes(p, { ...exit, tags: [], user: 'bob', approvedRoutes: [] }, users), [], 'not a node it does not name')
  const laptop = { ...alice, advertisedRoutes: ['0.0.0.0/0', '::/0', '10.1.0.0/16'] }
  t.same(autoApprovedRoutes(p, laptop, users), ['10.1.0.0/16'], 'a routes entry of 0.0.0.0/0 approves subnets, not an exit node')
})

t.test('the internet ranges are every address but the excluded ones, without overlap', async t => {
  const holes = NOT_INTERNET.map(x => parseCidr(x)!)
  t.same(subtractPrefixes(parseCidr('10.0.0.0/8')!, [parseCidr('10.0.0.0/9')!]).map(c => c.text), ['10.128.0.0/9'])
  t.same(subtractPrefixes(parseCidr('10.0.0.0/8')!, [parseCidr('192.168.0.0/16')!]).map(c => c.text), ['10.0.0.0/8'], 'a hole outside changes nothing')
  for (const f of [4, 6] as const) {
    const ranges = INTERNET_RANGES[f]
    const bits = f === 4 ? 32 : 128
    const size = (c: { length: number }): bigint => 1n << BigInt(bits - c.length)
    const total = ranges.reduce((s, c) => s + size(c), 0n) + holes.filter(h => h.family === f).reduce((s, c) => s + size(c), 0n)
    t.equal(total, 1n << BigInt(bits), `IPv${f}: ranges and holes add up to the whole space`)
    for (let i = 1; i < ranges.length; i++) t.ok(ranges[i - 1]!.network + size(ranges[i - 1]!) <= ranges[i]!.network, 'in order, disjoint')
  }
  t.ok(INTERNET_RANGES[4].some(c => c.text === '1.0.0.0/8'))
})
