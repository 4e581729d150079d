import t from 'tap'
import { createPolicyEngine, emailResolution, parsePolicy, runTests, tagOwnersAllow, type Policy, type PolicyNode, type PolicyUser } from '../src/policy/index.js'

// Policy groups whose members are groups at the identity provider (`idp:NAME`): a user is
// in them while the provider's groups claim, as last stored, names the group.

const TEXT = `{
  "groups": { "group:eng": ["idp:engineering", "carl@"] },
  "tagOwners": { "tag:build": ["group:eng"], "tag:db": [] },
  "acls": [{ "action": "accept", "src": ["group:eng"], "dst": ["tag:db:5432"] }],
}`

function policy (text: string, users: PolicyUser[] = []): Policy {
  const r = parsePolicy(text, { users })
  if (r.policy === undefined) throw new Error(r.errors.map(e => e.message).join('\n'))
  return r.policy
}

const laptop: PolicyNode = { id: 'laptop', name: 'laptop', tags: [], user: 'alice', ipv4: '100.64.0.1', ipv6: 'fd7a:115c:a1e0::1' }
const phone: PolicyNode = { id: 'phone', name: 'phone', tags: [], user: 'bob', ipv4: '100.64.0.2', ipv6: 'fd7a:115c:a1e0::2' }
const db: PolicyNode = { id: 'db', name: 'db', tags: ['tag:db'], ipv4: '100.64.0.3', ipv6: 'fd7a:115c:a1e0::3' }
const inEng: PolicyUser[] = [{ name: 'alice', email: 'alice@example.com', idpGroups: ['engineering'] }, { name: 'bob', idpGroups: ['sales'] }]
const outOfEng: PolicyUser[] = [{ name: 'alice', email: 'alice@example.com', idpGroups: ['marketing'] }, { name: 'bob', idpGroups: ['sales'] }]

t.test('idp: members parse; a bare idp: is refused with what to write', async t => {
  t.same(policy(TEXT).groups.get('group:eng')?.members, ['idp:engineering', 'carl@'], 'the group name is kept as the provider writes it')
  const bad = parsePolicy('{ "groups": { "group:eng": ["idp:"] } }')
  t.equal(bad.policy, undefined)
  t.match(bad.errors[0]?.message, /"idp:" is not a user: write alice@, alice@example.com, or idp:GROUP/)
  t.match(parsePolicy('{ "groups": { "group:eng": ["tag:x"] } }').errors[0]?.message, /idp:GROUP for a group at the identity provider/)
})

t.test('the provider\'s groups decide who is in the policy group', async t => {
  const engine = createPolicyEngine(policy(TEXT, inEng), inEng)
  engine.setNodes([laptop, phone, db])
  const srcs = (): string[] => engine.filterFor('db').flatMap(r => r.srcs)
  t.ok(srcs().includes('100.64.0.1/32'), 'alice (engineering at the provider) reaches db')
  t.notOk(srcs().includes('100.64.0.2/32'), 'bob (sales) does not')

  const changed = engine.setPolicy(policy(TEXT, outOfEng), outOfEng)
  t.notOk(srcs().includes('100.64.0.1/32'), 'alice left engineering: db no longer admits her')
  t.same([...changed].sort(), ['db', 'laptop'], 'only the nodes the membership touches change')
})

t.test('a membership change changes what the policy resolves, so it is recompiled', async t => {
  const p = policy(TEXT)
  t.not(emailResolution(p, inEng), emailResolution(p, outOfEng))
  t.equal(emailResolution(p, inEng), emailResolution(p, [...inEng, { name: 'dave', idpGroups: ['sales'] }]), 'a user outside the group changes nothing')
})

t.test('tag owners and policy tests see idp: members', async t => {
  const p = policy(TEXT)
  t.ok(tagOwnersAllow(p, inEng[0]!, 'tag:build'), 'alice may tag as a member of engineering')
  t.notOk(tagOwnersAllow(p, outOfEng[0]!, 'tag:build'))
  const tested = policy(TEXT.replace('"acls"', '"tests": [{ "src": "group:eng", "accept": ["tag:db:5432"] }],\n  "acls"'))
  t.same(runTests(tested, inEng).map(e => e.message), [], 'the group\'s members now pass its tests')
})
