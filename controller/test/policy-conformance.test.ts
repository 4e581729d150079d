import t from 'tap'
import { CATEGORIES, loadCategory, type Category } from './conformance/corpus.js'
import { EXIT_BEYOND, KNOWN_DIFFERENCES } from './conformance/known-differences.js'
import { runCategory } from './conformance/runner.js'
import { DONE_CATEGORIES, MIN_AGREE, formatTable } from './conformance/table.js'

/** CORPUS_SIZE is how many policies each corpus file holds (its README's table). */
const CORPUS_SIZE: Record<Category, number> = { acl: 215, routes: 125, policytest: 57, grant: 266, nodeattrs: 56, ssh: 108, sshtest: 37 }

// Warren's policy engine against Tailscale's own answers (test/fixtures/conformance/tailscale):
// the table is printed every run; a category marked done fails on any disagreement, and
// no category may agree on fewer cases than it once did.
t.test('Tailscale conformance', async t => {
  const results = CATEGORIES.map(c => runCategory(c, loadCategory(c)))
  t.comment(`\n${formatTable(results)}`)
  for (const r of results) {
    t.equal(r.cases.length, CORPUS_SIZE[r.category], `${r.category}: the whole corpus file is read`)
    t.ok(r.agree >= MIN_AGREE[r.category], `${r.category}: agrees on at least ${MIN_AGREE[r.category]} cases (it agrees on ${r.agree})`)
    if (!DONE_CATEGORIES.has(r.category)) continue
    const disagreements = r.cases.filter(c => c.verdict === 'disagree').map(c => `${c.id}: ${c.reason}\n  ${c.details.slice(0, 4).join('\n  ')}`)
    t.same(disagreements, [], `${r.category} (done): Warren agrees with Tailscale on every case it can judge`)
  }
  const listed = results.flatMap(r => r.cases).filter(c => c.verdict === 'listed').map(c => c.id).sort()
  t.same(listed, Object.keys(KNOWN_DIFFERENCES).sort(), 'every listed difference still differs (remove those that agree now)')
  const exitOther = results.flatMap(r => r.cases).filter(c => c.verdict === 'listed' && c.reason === EXIT_BEYOND)
    .flatMap(c => c.details.filter(d => !/ forwards \(beyond\) /.test(d)).map(d => `${c.id}: ${d}`))
  t.same(exitOther, [], 'exit nodes listed for `*` differ only beyond the internet: to the internet they forward as Tailscale does')
})
