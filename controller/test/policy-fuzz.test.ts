import t from 'tap'
import fc from 'fast-check'
import { isWarrenError } from '@warren/protocol'
import { POLICY } from './policy-fixtures.js'
import { DEFAULT_POLICY_TEXT, PolicyError, check, explain, parsePolicy, validatePolicy, type Policy } from '../src/policy/index.js'

// Random and mutated policy text through parse, validate, check and explain: each either
// gives its documented result or throws a WarrenError with a 4xx status, never anything
// else. A fixed seed and a bounded number of runs keep it the same in CI.
const SEED = 20261207
const users = [{ name: 'alice', email: 'alice@example.com' }, { name: 'bob' }]

/** CORPUS: valid policies like those of the other policy tests, to mutate. */
const CORPUS = [
  DEFAULT_POLICY_TEXT,
  POLICY,
  `{
  "tagOwners": { "tag:web": [], "tag:db": [] },
  "acls": [ { "action": "accept", "src": ["tag:web"], "dst": ["tag:db:5432"] },
            { "action": "accept", "src": ["*"], "dst": ["*:*"], "proto": "icmp" },
            { "action": "accept", "src": ["autogroup:tagged"], "dst": ["100.64.0.0/10:1000-2000"], "proto": 33 } ],
  "tests": [ { "src": "tag:web", "proto": "tcp", "accept": ["tag:db:5432"], "deny": ["tag:db:22"] } ],
}`
]

/** TOKENS are pieces of policy syntax and names, hostile ones included, to insert and swap. */
const TOKENS = ['{', '}', '[', ']', ':', ',', '"', '//', '/*', '*/', '\\', '"acls"', '"groups"', '"hosts"', '"tests"', '"tagOwners"',
  '"__proto__"', '"constructor"', '"prototype"', '"proto"', '"group:__proto__"', '"tag:constructor"', '"*:*"', '"*"', 'null', 'true',
  '1e999', '-0', '"\\u0000"', '"\\ud800"', '"alice@"', '"100.64.0.1/33"', '"[::1]:99999"', '"autogroup:self"', '"src"', '"dst"']

type Mutation = (text: string) => string

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.tuple(fc.nat(), fc.integer({ min: 1, max: 20 })).map(([at, n]): Mutation => s => { const i = at % (s.length + 1); return s.slice(0, i) + s.slice(i + n) }),
  fc.tuple(fc.nat(), fc.oneof(fc.constantFrom(...TOKENS), fc.string({ maxLength: 8 }))).map(([at, piece]): Mutation => s => { const i = at % (s.length + 1); return s.slice(0, i) + piece + s.slice(i) }),
  fc.tuple(fc.nat(), fc.integer({ min: 1, max: 40 })).map(([at, n]): Mutation => s => { const i = at % (s.length + 1); return s.slice(0, i) + s.slice(i, i + n) + s.slice(i) }),
  fc.tuple(fc.nat(), fc.nat()).map(([a, b]): Mutation => s => {
    const tokens = s.split(/(\s+|[{}[\],:])/)
    const i = a % tokens.length
    const j = b % tokens.length
    ;[tokens[i], tokens[j]] = [tokens[j]!, tokens[i]!]
    return tokens.join('')
  }),
  fc.tuple(fc.nat(), fc.integer({ min: 1, max: 3000 }), fc.constantFrom('[', '{"a":', '[{"x":')).map(([at, depth, open]): Mutation => s => {
    const i = at % (s.length + 1)
    return s.slice(0, i) + open.repeat(depth) + s.slice(i)
  })
)

const mutatedArb = fc.tuple(fc.constantFrom(...CORPUS), fc.array(mutationArb, { minLength: 1, maxLength: 4 }))
  .map(([text, mutations]) => mutations.reduce((s, m) => m(s), text))

const textArb = fc.oneof(
  { arbitrary: mutatedArb, weight: 6 },
  { arbitrary: fc.string({ maxLength: 200 }), weight: 1 },
  { arbitrary: fc.json({ maxDepth: 4 }), weight: 1 },
  { arbitrary: fc.jsonValue({ maxDepth: 3 }).map(v => JSON.stringify({ acls: [v], tests: [v] })), weight: 1 }
)

const WHO = ['alice@', 'alice@example.com', 'bob@', 'tag:web', 'tag:db', 'db-primary', 'office', '100.64.0.10', 'fd7a:115c:a1e0::10',
  '*', 'group:eng', '__proto__', 'constructor', 'prototype', 'tag:__proto__', '', '@', '::', '100.64.0.1/33']
const PROTO = [undefined, 'tcp', 'udp', 'icmp', 33, 136, '__proto__', 'constructor', 'prototype', 'toString', 256, -1, 1.5, '']

/** expected says whether an error is one a caller may get: a WarrenError with a 4xx status. */
function expected (e: unknown): boolean {
  return isWarrenError(e) && e.status >= 400 && e.status < 500
}

function parseOutcome (text: string): Policy | undefined {
  const parsed = parsePolicy(text, { users })
  const validated = validatePolicy(text, users)
  for (const problem of [...parsed.errors, ...parsed.warnings, ...validated.errors]) {
    if (!(problem instanceof PolicyError) || problem.line < 1 || problem.column < 1) throw new Error(`not a placed PolicyError: ${String(problem)}`)
  }
  if ((parsed.policy === undefined) !== (parsed.errors.length > 0)) throw new Error('a policy and errors, or neither')
  return parsed.policy
}

t.test('parse and validate give a result for any text, mutated policies and random text alike', async t => {
  let parsedSome = 0
  fc.assert(fc.property(textArb, text => {
    if (parseOutcome(text) !== undefined) parsedSome++
  }), { seed: SEED, numRuns: 400 })
  t.ok(parsedSome > 0, `some mutated policies still parse (${parsedSome})`)
})

t.test('check and explain on any parsed policy answer or throw a 4xx WarrenError', async t => {
  const policies = fc.oneof(mutatedArb, fc.constantFrom(...CORPUS)).map(text => parsePolicy(text, { users }).policy).filter((p): p is Policy => p !== undefined)
  fc.assert(fc.property(policies, fc.constantFrom(...WHO), fc.constantFrom(...WHO), fc.constantFrom(...PROTO), fc.integer({ min: -1, max: 70000 }),
    (policy, src, dst, proto, port) => {
      for (const run of [() => check(policy, src, dst, proto, port, { users }), () => explain(policy, src, dst, port, proto, { users })]) {
        try {
          run()
        } catch (e) {
          if (!expected(e)) throw e
        }
      }
    }), { seed: SEED, numRuns: 300 })
  t.pass('300 random checks and explains')
})
