import t from 'tap'
import fc from 'fast-check'
import { filterAllows } from '@warren/protocol'
import { check, createPolicyEngine, parsePolicy, type Policy, type PolicyNode } from '../src/policy/index.js'

// Random small policies over a fixed universe of users, tags, hosts and addresses.
const users = [{ name: 'u0', email: 'u0@example.com' }, { name: 'u1' }, { name: 'u2' }]
const TAGS = ['tag:t0', 'tag:t1', 'tag:t2']
const SOURCES = ['*', 'u0@', 'u0@example.com', 'u1@', 'nobody@', 'group:g0', 'group:g1', ...TAGS, 'autogroup:member', 'autogroup:tagged',
  'h4', 'h6', '100.64.0.1', '100.64.0.0/30', 'fd7a:115c:a1e0::2', 'fd7a:115c:a1e0::/126']
const DESTINATIONS = [...SOURCES.filter(s => !s.includes(':') || s.startsWith('tag:') || s.startsWith('group:') || s.startsWith('autogroup:')),
  'autogroup:self', '[fd7a:115c:a1e0::2]', '[fd7a:115c:a1e0::/126]', '100.64.0.3']
const SELF_SOURCES = /^(\*|[^:]*@.*|group:.*|autogroup:member)$/
const PORTS = ['*', '22', '80,443', '1000-2000', '22-23', '443']
const PROTOS: Array<string | number | undefined> = [undefined, undefined, 'tcp', 'udp', 'icmp', '17', 'sctp', 'gre', 58, 33, '136']
const PORTLESS = new Set(['icmp', 'gre', 58])

const ruleArb = fc.record({
  src: fc.uniqueArray(fc.constantFrom(...SOURCES), { minLength: 1, maxLength: 3 }),
  dst: fc.uniqueArray(fc.tuple(fc.constantFrom(...DESTINATIONS), fc.constantFrom(...PORTS)), { minLength: 1, maxLength: 3 }),
  proto: fc.constantFrom(...PROTOS)
})

const policyArb = fc.record({
  g0: fc.subarray(['u0@', 'u1@example.com', 'u2@']),
  g1: fc.subarray(['u0@example.com', 'u2@', 'zed@']),
  rules: fc.array(ruleArb, { minLength: 0, maxLength: 4 })
}).map(({ g0, g1, rules }) => JSON.stringify({
  groups: { 'group:g0': g0, 'group:g1': g1 },
  tagOwners: Object.fromEntries(TAGS.map(tag => [tag, []])),
  hosts: { h4: '100.64.0.2/31', h6: 'fd7a:115c:a1e0::3' },
  acls: rules.map(r => {
    const selfSrc = r.src.filter(x => SELF_SOURCES.test(x))
    const rule: Record<string, unknown> = {
      action: 'accept',
      // autogroup:self is only for sources that are users (users, groups, autogroup:member, *)
      src: r.dst.some(([d]) => d === 'autogroup:self') ? (selfSrc.length > 0 ? selfSrc : ['autogroup:member']) : r.src,
      dst: r.dst.map(([d, ports]) => `${d}:${PORTLESS.has(r.proto as string) ? '*' : ports}`)
    }
    if (r.proto !== undefined) rule.proto = r.proto
    return rule
  })
}, null, 2))

const ownerArb = fc.oneof(
  fc.constantFrom('u0', 'u1', 'u2').map(user => ({ user, tags: [] as string[] })),
  fc.uniqueArray(fc.constantFrom(...TAGS), { minLength: 1, maxLength: 2 }).map(tags => ({ user: 'u1', tags }))
)

function makeNode (i: number, owner: { user: string, tags: string[] }, shifted = false): PolicyNode {
  const base = shifted ? 100 : 0
  return { id: `n${i}`, name: `node${i}`, user: owner.user, tags: owner.tags, ipv4: `100.64.0.${base + i + 1}`, ipv6: `fd7a:115c:a1e0::${(base + i + 1).toString(16)}` }
}

function parse (text: string): Policy {
  const r = parsePolicy(text, { users })
  if (r.policy === undefined) throw new Error(`generated policy does not parse:\n${text}\n${r.errors.map(e => e.message).join('\n')}`)
  return r.policy
}

const identity = (n: PolicyNode, ips: string[]) => ({ user: n.user, tags: n.tags, ips })

t.test('check on identities agrees with each destination node\'s compiled filter', async t => {
  fc.assert(fc.property(
    policyArb,
    fc.array(ownerArb, { minLength: 1, maxLength: 6 }),
    fc.array(fc.record({
      src: fc.nat(), dst: fc.nat(), v6: fc.boolean(),
      proto: fc.constantFrom(1, 6, 17, 33, 47, 58, 132, 136), port: fc.constantFrom(0, 22, 23, 80, 443, 1500, 2500)
    }), { minLength: 1, maxLength: 20 }),
    (text, owners, tuples) => {
      const policy = parse(text)
      const nodes = owners.map((o, i) => makeNode(i, o))
      const engine = createPolicyEngine(policy, users)
      engine.setNodes(nodes)
      for (const tuple of tuples) {
        const src = nodes[tuple.src % nodes.length]!
        const dst = nodes[tuple.dst % nodes.length]!
        const srcIp = tuple.v6 ? src.ipv6 : src.ipv4
        const byCheck = check(policy, identity(src, [srcIp]), identity(dst, [dst.ipv4, dst.ipv6]), tuple.proto, tuple.port, { users }).allowed
        const byFilter = filterAllows(engine.filterFor(dst.id), { src: srcIp, proto: tuple.proto, dport: tuple.port })
        if (byCheck !== byFilter) {
          throw new Error(`${src.name}(${srcIp}) -> ${dst.name} ${tuple.proto}/${tuple.port}: check says ${byCheck}, filter says ${byFilter}\n` +
            JSON.stringify(engine.filterFor(dst.id)))
        }
      }
    }), { numRuns: 300 })
  t.pass('300 random policies agree')
})

t.test('peers are exactly the nodes a node may reach or be reached by', async t => {
  fc.assert(fc.property(policyArb, fc.array(ownerArb, { minLength: 2, maxLength: 5 }), (text, owners) => {
    const policy = parse(text)
    const nodes = owners.map((o, i) => makeNode(i, o))
    const engine = createPolicyEngine(policy, users)
    engine.setNodes(nodes)
    const reaches = (a: PolicyNode, b: PolicyNode): boolean => [1, 6, 17, 33, 47, 58, 132, 136].some(proto => [0, 22, 80, 443, 1000].some(port =>
      check(policy, identity(a, [a.ipv4, a.ipv6]), identity(b, [b.ipv4, b.ipv6]), proto, port, { users }).allowed))
    for (const a of nodes) {
      const peers = engine.peersOf(a.id)
      for (const b of nodes) {
        const want = a !== b && (reaches(a, b) || reaches(b, a))
        if (peers.has(b.id) !== want) throw new Error(`${a.name} peers ${b.name}: engine ${peers.has(b.id)}, expected ${want}`)
      }
      if (peers.size !== [...peers].length || peers.has(a.id)) throw new Error('peer set is inconsistent')
    }
  }), { numRuns: 100 })
  t.pass('100 random policies agree')
})

t.test('incremental changes equal a fresh compile, and report exactly the nodes that changed', async t => {
  const opArb = fc.record({ remove: fc.boolean(), i: fc.nat({ max: 6 }), owner: ownerArb, shifted: fc.boolean() })
  fc.assert(fc.property(policyArb, fc.array(opArb, { minLength: 1, maxLength: 12 }), (text, ops) => {
    const policy = parse(text)
    const engine = createPolicyEngine(policy, users)
    const current = new Map<string, PolicyNode>()
    const snapshot = (): Map<string, string> => {
      const fresh = createPolicyEngine(policy, users)
      fresh.setNodes([...current.values()])
      return new Map([...current.keys()].map(id => [id, JSON.stringify([[...fresh.peersOf(id)].sort(), fresh.filterFor(id)])]))
    }
    let before = snapshot()
    for (const op of ops) {
      const id = `n${op.i}`
      let change: Set<string>
      if (op.remove) {
        current.delete(id)
        change = engine.removeNode(id)
      } else {
        const n = makeNode(op.i, op.owner, op.shifted)
        current.set(id, n)
        change = engine.upsertNode(n)
      }
      const after = snapshot()
      const want = new Set<string>()
      for (const x of new Set([...before.keys(), ...after.keys()])) {
        if (!after.has(x)) continue
        if ((before.get(x) ?? JSON.stringify([[], []])) !== after.get(x)) want.add(x)
      }
      if (JSON.stringify([...change].sort()) !== JSON.stringify([...want].sort())) {
        throw new Error(`${op.remove ? 'remove' : 'upsert'} ${id}: engine reported ${[...change].sort().join(',')}, expected ${[...want].sort().join(',')}`)
      }
      for (const x of current.keys()) {
        const got = JSON.stringify([[...engine.peersOf(x)].sort(), engine.filterFor(x)])
        if (got !== after.get(x)) throw new Error(`${x} after ${op.remove ? 'remove' : 'upsert'} ${id}: incremental ${got} != fresh ${after.get(x)}`)
      }
      before = after
    }
  }), { numRuns: 200 })
  t.pass('200 random change sequences agree')
})
