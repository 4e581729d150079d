/**
 * print-conformance prints the Tailscale conformance table; with `--details` also every
 * disagreement (or, with category names or case ids as arguments, only those).
 *
 * Run: npm run conformance -w controller [-- --details] [-- acl acl-a05 ...]
 */
import { CATEGORIES, loadCategory, type Category } from './corpus.js'
import { runCategory } from './runner.js'
import { formatTable } from './table.js'

/** MAX_LINES is how many differences are shown per case. */
const MAX_LINES = 6
const args = process.argv.slice(2)
const details = args.includes('--details')
const wanted = args.filter(a => !a.startsWith('--'))
const categories = CATEGORIES.filter(c => wanted.length === 0 || wanted.some(w => w === c || w.startsWith(`${c}-`)))
const results = categories.map((c: Category) => runCategory(c, loadCategory(c)))
console.log(formatTable(results))
if (details || wanted.length > 0) {
  for (const r of results) {
    for (const c of r.cases) {
      if (c.verdict !== 'disagree' && !wanted.includes(c.id)) continue
      if (wanted.length > 0 && !wanted.includes(r.category) && !wanted.includes(c.id)) continue
      console.log(`\n${c.id}: ${c.verdict}${c.reason === '' ? '' : ` (${c.reason})`}`)
      for (const d of c.details.slice(0, MAX_LINES)) console.log(`  ${d}`)
      if (c.details.length > MAX_LINES) console.log(`  ... and ${c.details.length - MAX_LINES} more`)
    }
  }
}
