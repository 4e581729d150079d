import t from 'tap'
import { autoApprovedRoutes, createPolicyEngine, diff, explain, emailResolution, parsePolicy, runTests, tagOwnersAllow, type Policy, type PolicyNode, type PolicyUser } from '../src/policy/index.js'
import { conditionHolds, parsePostureCondition, type PostureCondition } from '../src/policy/posture.js'

const users: PolicyUser[] = [{ name: 'alice', role: 'admin' }, { name: 'bob' }, { name: 'carl', role: 'network-admin' }]

function policy (text: string, us: readonly PolicyUser[] = users): Policy {
  const r = parsePolicy(text, { users: us })
  if (r.policy === undefined) throw new Error(r.errors.map(e => e.message).join('\n'))
  return r.policy
}

function errors (text: string): string[] {
  return parsePolicy(text, { users }).errors.map(e => e.message)
}

function cond (text: string): PostureCondition {
  const c = parsePostureCondition(text)
  if (typeof c === 'string') throw new Error(c)
  return c
}

const linux = { 'node:os': 'linux', 'node:osVersion': '6.1.0', 'node:tsVersion': '1.42.1', 'custom:tier': 'prod', 'custom:score': 70, 'custom:managed': true }

t.test('conditions: each operator, versions compared part by part, an unset attribute meets only NOT SET', async t => {
  const holds = (text: string, attrs: Record<string, string | number | boolean> | undefined = linux): boolean => conditionHolds(cond(text), attrs)
  t.ok(holds("node:os == 'linux'"))
  t.notOk(holds("node:os == 'macos'"))
  t.ok(holds('node:os != "macos"'))
  t.ok(holds("node:tsVersion >= '1.40'"), '1.42.1 >= 1.40')
  t.notOk(holds("node:tsVersion >= '1.100'"), '42 < 100: parts compare as numbers, not as text')
  t.ok(holds("node:tsVersion > '1.9'"))
  t.ok(holds("node:tsVersion <= '1.42.1'"))
  t.notOk(holds("node:tsVersion < '1.42'"), '1.42.1 is not below 1.42')
  t.ok(holds('custom:score > 50'))
  t.notOk(holds('custom:score < 50'))
  t.ok(holds('custom:managed == true'))
  t.ok(holds("custom:tier IN ['prod', 'staging']"))
  t.ok(holds("custom:tier NOT IN ['dev']"))
  t.notOk(holds("custom:tier not in ['prod']"), 'keywords in any case')
  t.ok(holds('custom:tier IS SET'))
  t.ok(holds('custom:other NOT SET'))
  t.notOk(holds("custom:other != 'x'"), 'an unset attribute fails !=')
  t.notOk(holds("custom:other NOT IN ['x']"), 'and NOT IN')
  t.notOk(holds("custom:score >= '50'"), 'a number and a string do not compare')
  t.notOk(conditionHolds(cond("node:os == 'linux'"), undefined), 'a node that reports nothing meets nothing')
})

t.test('malformed conditions and unknown attributes are refused with the reason', async t => {
  t.match(parsePostureCondition("node:os = 'linux'"), /not a posture condition: write ATTRIBUTE OPERATOR VALUE/)
  t.match(parsePostureCondition("node:tsAutoUpdate == true"), /Warren nodes do not report node:tsAutoUpdate; they report node:os, node:osVersion, node:tsVersion, node:tsReleaseTrack/)
  t.match(parsePostureCondition("node:tsReleaseTrack == 'stable'"), { attr: 'node:tsReleaseTrack', op: '==', values: ['stable'] }, 'the release track is reported')
  t.match(parsePostureCondition("falcon:ztaScore >= 50"), /"falcon:ztaScore" is not an attribute Warren knows/)
  t.match(parsePostureCondition('custom:x IN []'), /must hold one or more values/)
  t.match(parsePostureCondition('custom:x > true'), /true and false can only be compared with == or !=/)
  t.match(parsePostureCondition("custom:x == linux"), /not a posture condition/, 'strings are quoted')
})

t.test('postures in the policy file: names, uses and tests are checked', async t => {
  const errs = errors(`{
    "postures": { "posture:ok": ["node:os == 'linux'"], "bad-name": [], "posture:broken": ["node:os === 'x'"] },
    "defaultSrcPosture": ["posture:missing"],
    "acls": [ { "action": "accept", "src": ["*"], "dst": ["*:*"], "srcPosture": ["posture:okk"] } ],
    "grants": [ { "src": ["*"], "dst": ["*"], "ip": ["*"], "srcPosture": ["posture:nope"] } ]
  }`)
  t.match(errs, [
    /posture name "bad-name" must be "posture:" and a name/,
    /"node:os === 'x'" is not a posture condition/,
    /defaultSrcPosture: posture posture:missing is not defined in "postures"/,
    /srcPosture of rule 1 \(acls\[0\]\): posture posture:okk is not defined in "postures" \(did you mean posture:ok\?\)/,
    /srcPosture of grant 1 \(grants\[0\]\): posture posture:nope is not defined/
  ])
  t.match(errors('{ "acls": [ { "action": "accept", "src": ["*"], "dst": ["autogroup:admin:*"] } ] }'), [/autogroup:admin can only be a source/])
  t.match(errors('{ "tagOwners": { "tag:x": ["autogroup:tagged"] }, "acls": [] }'), [/autogroup:tagged cannot own a tag; use users, groups, tags, autogroup:member or a role/])
})

let ip = 1
function node (name: string, owner: string | string[], attrs?: Record<string, string | number | boolean>): PolicyNode {
  const i = ip++
  const n: PolicyNode = { id: name, name, tags: Array.isArray(owner) ? owner : [], ipv4: `100.64.0.${i}`, ipv6: `fd7a:115c:a1e0::${i}` }
  if (!Array.isArray(owner)) n.user = owner
  if (attrs !== undefined) n.postureAttrs = attrs
  return n
}
const addrs = (...ns: PolicyNode[]): string[] => ns.flatMap(n => [`${n.ipv4}/32`, `${n.ipv6}/128`]).sort()
/** sources lists the addresses a node's filter lets in, whatever the protocol */
const sources = (engine: { filterFor: (id: string) => Array<{ srcs: string[] }> }, id: string): string[] => [...new Set(engine.filterFor(id).flatMap(f => f.srcs))].sort()

t.test('the engine lets in only sources that meet a posture, and follows attribute changes', async t => {
  const p = policy(`{
    "tagOwners": { "tag:db": [], "tag:web": [] },
    "postures": { "posture:latest": ["node:os == 'linux'", "node:tsVersion >= '1.40'"], "posture:managed": ["custom:managed == true"] },
    "defaultSrcPosture": ["posture:latest"],
    "acls": [
      { "action": "accept", "src": ["*"], "dst": ["tag:db:5432"] },
      { "action": "accept", "src": ["alice@", "10.0.0.0/8"], "dst": ["tag:web:443"], "srcPosture": ["posture:managed", "posture:latest"] }
    ]
  }`)
  ip = 1
  const current = node('current', 'alice', linux)
  const old = node('old', 'bob', { ...linux, 'node:tsVersion': '1.38.0' })
  const managedMac = node('mac', 'alice', { 'node:os': 'macos', 'custom:managed': true })
  const db = node('db', ['tag:db'])
  const web = node('web', ['tag:web'])
  const engine = createPolicyEngine(p, users)
  engine.setNodes([current, old, managedMac, db, web])
  t.same(sources(engine, 'db'), addrs(current), 'defaultSrcPosture: * means the nodes that meet posture:latest, not the mesh\'s ranges')
  t.same([...engine.peersOf('db')], ['current'])
  t.same(sources(engine, 'web'), addrs(current, managedMac), 'a rule\'s own srcPosture: either posture will do; a range source lets in no node outside it')

  const change = engine.upsertNode({ ...old, postureAttrs: { ...linux, 'node:tsVersion': '1.40.0' } })
  t.ok(change.filterChanged.has('db') && change.peersGained.has('db'), 'updating the client lets it in at once')
  t.same(sources(engine, 'db'), addrs(current, old))

  const lost = engine.upsertNode({ ...current, postureAttrs: { ...linux, 'node:os': 'windows' } })
  t.ok(lost.filterChanged.has('db') && lost.peersLost.has('db'), 'a source that stops meeting the posture is dropped at once')
  t.same(sources(engine, 'db'), addrs(old))
  t.same(engine.upsertNode({ ...old, postureAttrs: { ...linux, 'node:tsVersion': '1.41.0' } }).size, 0, 'an attribute change that changes no posture changes nothing')
})

t.test('roles: autogroup:<role> as source, tag owner and route approver, and role changes show', async t => {
  const p = policy(`{
    "tagOwners": { "tag:ops": ["autogroup:it-admin", "autogroup:admin"] },
    "autoApprovers": { "routes": { "10.1.0.0/16": ["autogroup:network-admin"] } },
    "acls": [ { "action": "accept", "src": ["autogroup:admin"], "dst": ["tag:ops:22"] } ]
  }`)
  ip = 1
  const a = node('a', 'alice')
  const b = node('b', 'bob')
  const ops = node('ops', ['tag:ops'])
  const engine = createPolicyEngine(p, users)
  engine.setNodes([a, b, ops])
  t.same(sources(engine, 'ops'), addrs(a), 'alice is an admin, bob a member')
  t.ok(tagOwnersAllow(p, users[0]!, 'tag:ops'), 'an admin owns tag:ops')
  t.notOk(tagOwnersAllow(p, users[1]!, 'tag:ops'), 'a member does not')
  t.ok(tagOwnersAllow(p, { name: 'dora', role: 'it-admin' }, 'tag:ops'))
  const router = { ...node('r', 'carl'), advertisedRoutes: ['10.1.2.0/24'] }
  t.same(autoApprovedRoutes(p, router, users), ['10.1.2.0/24'], 'a network admin\'s routes are approved')
  t.same(autoApprovedRoutes(p, { ...router, user: 'bob' }, users), [], 'a member\'s are not')

  const promoted = users.map(u => u.name === 'bob' ? { ...u, role: 'admin' as const } : u)
  t.not(emailResolution(p, promoted), emailResolution(p, users), 'a role change is a change the policy must be recompiled for')
  t.equal(emailResolution(policy('{ "acls": [] }'), promoted), emailResolution(policy('{ "acls": [] }'), users), 'not for a policy without roles')
  const identities = diff(policy('{ "tagOwners": { "tag:ops": [] }, "acls": [] }'), p, [], users).gained.filter(x => x.kind === 'identity' && x.ports !== '*')
  t.same(identities.map(x => `${x.src} -> ${x.dst}:${x.ports}`), ['alice@ -> tag:ops:22'], 'diff names the admins, not "other users"')
  const changed = engine.setPolicy(p, promoted)
  t.ok(changed.has('ops'))
  t.same(sources(engine, 'ops'), addrs(a, b))
})

t.test('tests: srcPostureAttrs gives the source device attributes', async t => {
  const text = (attrs: string): string => `{
    "tagOwners": { "tag:db": [] },
    "postures": { "posture:latest": ["node:tsVersion >= '1.40'"] },
    "acls": [ { "action": "accept", "src": ["alice@"], "dst": ["tag:db:5432"], "srcPosture": ["posture:latest"] } ],
    "tests": [ { "src": "alice@", ${attrs} "accept": ["tag:db:5432"] } ]
  }`
  t.same(runTests(policy(text('"srcPostureAttrs": { "node:tsVersion": "1.42.0" },'))), [], 'with a recent version the test passes')
  t.match(runTests(policy(text('"srcPostureAttrs": { "node:tsVersion": "1.38.0" },'))).map(e => e.message), [/expected accept but is denied/])
  t.match(runTests(policy(text(''))).map(e => e.message), [/expected accept but is denied/], 'without attributes no posture is met')
  ip = 1
  const laptop = node('laptop', 'alice', { 'node:tsVersion': '1.42.0' })
  const p = policy(text(''))
  t.ok(explain(p, 'laptop', 'tag:db', 5432, 'tcp', { users, nodes: [laptop] }).allowed, 'explain judges a device named by its name with its attributes')
  t.notOk(explain(p, 'alice@', 'tag:db', 5432, 'tcp', { users, nodes: [laptop] }).allowed, 'a user has no device, so meets no posture')
  t.match(errors(text('"srcPostureAttrs": { "node:tsAutoUpdate": true },')), [/Warren nodes do not report node:tsAutoUpdate/])
})
