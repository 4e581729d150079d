import t from 'tap'
import { loadCategory, policyText, type CorpusRecord } from './conformance/corpus.js'
import { runCase } from './conformance/runner.js'

// Grants with `app` against Tailscale's answers: every such case of the corpus is judged
// on its capabilities (the CapGrant entries each node received, compared per node,
// source and capability), not left as "not yet applicable".

const hasApp = (r: CorpusRecord): boolean => /"app"\s*:/.test(policyText(r))
/** DEPENDS_ON_OTHER_FEATURES: app cases that also need a part Warren does not have yet (via, exit nodes, subnet filters) */
const DEPENDS_ON_OTHER_FEATURES = /grants via|autogroup:internet|approved subnet routes/

t.test('grant cases with app: each is judged and agrees, unless it waits for another feature', async t => {
  const cases = loadCategory('grant').filter(hasApp).map(runCase)
  const judged = cases.filter(c => c.verdict !== 'pending')
  t.same(cases.filter(c => c.verdict === 'pending' && !DEPENDS_ON_OTHER_FEATURES.test(c.reason)).map(c => `${c.id}: ${c.reason}`), [],
    'no app case waits for app')
  t.same(judged.filter(c => c.verdict !== 'agree').map(c => `${c.id}: ${c.reason} ${c.details.slice(0, 2).join('; ')}`), [])
  t.equal(judged.length, 69, 'the 69 app cases that need nothing else are judged')
})

// The two nodeAttrs cases with grants' app: their capabilities do not depend on nodeAttrs
// (node attributes are not capabilities between nodes), so they are judged here with that
// section removed, until Warren reads nodeAttrs and the table judges them whole.
t.test('nodeattrs cases with app agree on capabilities', async t => {
  const records = loadCategory('nodeattrs').filter(hasApp)
  t.equal(records.length, 2)
  for (const r of records) {
    const { nodeAttrs, ...rest } = r.policy as Record<string, unknown>
    t.ok(nodeAttrs !== undefined, `${r.id} has nodeAttrs`)
    const c = runCase({ ...r, policy: rest })
    t.equal(c.verdict, 'agree', `${r.id}: ${c.reason} ${c.details.slice(0, 2).join('; ')}`)
  }
})
