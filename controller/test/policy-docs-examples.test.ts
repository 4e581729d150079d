import { readFileSync } from 'node:fs'
import t from 'tap'
import { parsePolicy } from '../src/policy/index.js'

// The policy examples of Tailscale's public docs (test/fixtures/tailscale-docs/examples.json,
// each with the page it follows) must parse: accepted, or refused only because they use a
// part Warren has not built, named in the error so that the user knows what to remove.

interface DocExample { name: string, source: string, policy: string, refused?: string[] }

const examples = JSON.parse(readFileSync(new URL('../../test/fixtures/tailscale-docs/examples.json', import.meta.url), 'utf8')) as DocExample[]

/** NOT_BUILT: the parts of Tailscale's policy file Warren refuses because it has not built them yet. */
const NOT_BUILT = new Set<string>([])

t.ok(examples.length >= 20, 'the fixture holds the docs\' examples')

for (const ex of examples) {
  t.test(ex.name, async t => {
    t.match(ex.source, /^https:\/\/tailscale\.com\/kb\//, 'the example names the docs page it follows')
    const result = parsePolicy(ex.policy)
    if (ex.refused === undefined) {
      t.same(result.errors.map(e => e.message), [], 'accepted without errors')
      t.ok(result.policy, 'a policy results')
      return
    }
    t.equal(result.policy, undefined, 'refused')
    for (const feature of ex.refused) t.ok(NOT_BUILT.has(feature), `${feature} is a listed part not built yet`)
    for (const e of result.errors) {
      t.ok(ex.refused.some(f => e.message.includes(f)), `the error names the part not built: ${e.message}`)
    }
    t.ok(ex.refused.every(f => result.errors.some(e => e.message.includes(f))), 'every listed part is named by an error')
  })
}
