import t from 'tap'
import { loadCategory, policyText, type CorpusRecord } from './conformance/corpus.js'
import { runCase } from './conformance/runner.js'

// Grants with `app` against Tailscale's answers: every such case of the corpus is judged
// on its capabilities (the CapGrant entries each node received, compared per node,
// source and capability), not left as "not yet applicable".

const hasApp = (r: CorpusRecord): boolean => /"app"\s*:/.test(policyText(r))
/** DEPENDS_ON_OTHER_FEATURES: app cases that also need a part Warren does not have yet (exit nodes) */
const DEPENDS_ON_OTHER_FEATURES = /autogroup:internet|exit nodes/

t.test('grant cases with app: each is judged and agrees, unless it waits for another feature', async t => {
  const cases = loadCategory('grant').filter(hasApp).map(runCase)
  const judged = cases.filter(c => c.verdict !== 'pending')
  t.same(cases.filter(c => c.verdict === 'pending' && !DEPENDS_ON_OTHER_FEATURES.test(c.reason)).map(c => `${c.id}: ${c.reason}`), [],
    'no app case waits for app')
  t.same(judged.filter(c => c.verdict !== 'agree').map(c => `${c.id}: ${c.reason} ${c.details.slice(0, 2).join('; ')}`), [])
  t.equal(judged.length, 77, 'every app case is judged: 69, 6 with via or subnet routes, 2 that Tailscale refuses for autogroup:internet')
})

// The two nodeAttrs cases with grants' app are judged whole: capabilities, node
// attributes and filters.
t.test('nodeattrs cases with app agree on capabilities and attributes', async t => {
  const records = loadCategory('nodeattrs').filter(hasApp)
  t.equal(records.length, 2)
  for (const c of records.map(runCase)) t.equal(c.verdict, 'agree', `${c.id}: ${c.reason} ${c.details.slice(0, 2).join('; ')}`)
})
