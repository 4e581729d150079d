import t from 'tap'
import { filterAllows } from '@warren/protocol'
import { createPolicyEngine, parsePolicy, runTests, type PolicyNode } from '../src/policy/index.js'

// A group is compiled once and shared by the rules and filters that name it. These check
// that sharing never changes an answer: a group test still fails for the one member that
// differs, and every server's filter follows the group's members as they come and go.

const MEMBERS = 2000
const SERVERS = 20
const users = Array.from({ length: MEMBERS }, (_, u) => ({ name: `user${u}` }))

function bigGroupPolicy (extra: string): string {
  const staff = JSON.stringify(users.map(u => `${u.name}@`))
  const tagOwners = Object.fromEntries(Array.from({ length: SERVERS }, (_, s) => [`tag:svc${s}`, ['group:staff']]))
  const acls = Array.from({ length: 100 }, (_, r) => ({ action: 'accept', src: ['group:staff'], dst: [`tag:svc${r % SERVERS}:${1000 + r}`], proto: 'tcp' }))
  return `{"groups": {"group:staff": ${staff}, "group:some": ["user1@", "user2@"]}, "tagOwners": ${JSON.stringify(tagOwners)}, "acls": ${JSON.stringify(acls).slice(0, -1)}${extra}]}`
}

function nodeAt (i: number): PolicyNode {
  const n = i + 1
  const addr = { ipv4: `100.64.${n >> 8}.${n & 255}`, ipv6: `fd7a:115c:a1e0::${n.toString(16)}` }
  return i < SERVERS ? { id: `n${i}`, name: `svc${i}`, tags: [`tag:svc${i}`], ...addr } : { id: `n${i}`, name: `m${i}`, user: `user${i - SERVERS}`, tags: [], ...addr }
}

t.test('a test from a group fails for exactly the members a rule leaves out', async t => {
  const text = bigGroupPolicy(', {"action": "accept", "src": ["user7@"], "dst": ["tag:svc0:22"]}')
  const ok = parsePolicy(text.replace(/]}$/, '], "tests": [{"src": "group:staff", "accept": ["tag:svc3:1003"]}]}'), { users })
  t.same(runTests(ok.policy!, users), [], 'every member reaches tag:svc3:1003 through the group')
  const some = parsePolicy(text.replace(/]}$/, '], "tests": [{"src": "group:some", "accept": ["tag:svc0:22"]}]}'), { users })
  const failures = runTests(some.policy!, users).map(e => e.message)
  t.equal(failures.length, 2, 'both members of group:some fail: only user7 may reach port 22')
  t.match(failures[0], /group:some \(user1@\) -> tag:svc0:22\/tcp expected accept/)
  const seven = parsePolicy(text.replace(/]}$/, '], "tests": [{"src": "group:staff", "accept": ["tag:svc0:22"]}]}'), { users })
  const staffFailures = runTests(seven.policy!, users)
  t.equal(staffFailures.length, MEMBERS - 1, 'the group test fails for every member but user7')
  t.notOk(staffFailures.some(e => e.message.includes('(user7@)')), 'user7, whom a rule names, passes')
})

t.test('the servers\' filters follow the group as members join and leave', async t => {
  const { policy } = parsePolicy(bigGroupPolicy(''), { users })
  const engine = createPolicyEngine(policy!, users)
  const nodes = Array.from({ length: SERVERS + MEMBERS - 1 }, (_, i) => nodeAt(i))
  engine.setNodes(nodes)
  const member = nodes[SERVERS + 5]!
  const joiner = nodeAt(SERVERS + MEMBERS - 1)
  const allows = (server: number, n: PolicyNode, port: number): boolean => filterAllows(engine.filterFor(`n${server}`), { src: n.ipv4, proto: 6, dport: port })
  t.ok(allows(3, member, 1003), 'a member reaches svc3 on its port')
  t.notOk(allows(3, joiner, 1003), 'a node not yet joined does not')
  t.notOk(allows(3, member, 1004), 'nor does a member on a port of another server')

  const joined = engine.upsertNode(joiner)
  for (let s = 0; s < SERVERS; s++) t.ok(joined.filterChanged.has(`n${s}`), `svc${s}'s filter changed`)
  t.ok(allows(3, joiner, 1003) && allows(7, joiner, 1007), 'the joiner reaches every server on its ports')
  t.ok(engine.peersOf('n3').has(joiner.id) && engine.peersOf(joiner.id).has('n3'), 'the joiner and the servers are peers')
  t.equal(engine.peersOf('n3').size, MEMBERS, 'a server\'s peers are the group\'s nodes')

  const left = engine.removeNode(member.id)
  t.ok(left.filterChanged.has('n3'), 'a member leaving changes the servers\' filters')
  t.notOk(allows(3, member, 1003), 'and its address is gone from them')
  t.notOk(engine.peersOf('n3').has(member.id), 'as is the node from the servers\' peers')
  t.ok(allows(3, joiner, 1003), 'the other members stay')
})
