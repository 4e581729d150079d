import type { Category } from './corpus.js'
import type { CategoryResult } from './runner.js'

/**
 * DONE_CATEGORIES are the categories where Warren agrees with Tailscale on every case it
 * can judge: a disagreement there fails the conformance test. The others are work in
 * progress and only reported.
 */
export const DONE_CATEGORIES: ReadonlySet<Category> = new Set<Category>(['acl', 'routes', 'policytest', 'grant', 'nodeattrs', 'ssh', 'sshtest'])

/** MIN_AGREE is how many cases each category agreed on when last raised: a change may not lose any. */
export const MIN_AGREE: Readonly<Record<Category, number>> = { acl: 215, routes: 120, policytest: 56, grant: 266, nodeattrs: 52, ssh: 104, sshtest: 36 }

/** formatTable prints the conformance table as Markdown, with why cases are not yet applicable below it. */
export function formatTable (results: readonly CategoryResult[]): string {
  const rows = results.map(r => {
    // a listed difference is reasoned in KNOWN_DIFFERENCES, so it counts neither way
    const judged = r.agree + r.disagree
    const pct = judged === 0 ? '-' : `${Math.floor(100 * r.agree / judged)}%`
    return `| ${r.category} | ${r.cases.length} | ${r.agree} | ${r.disagree} | ${r.listed} | ${r.pending} | ${pct} | ${DONE_CATEGORIES.has(r.category) ? 'done' : 'in progress'} |`
  })
  const total = (f: (r: CategoryResult) => number): number => results.reduce((s, r) => s + f(r), 0)
  rows.push(`| all | ${total(r => r.cases.length)} | ${total(r => r.agree)} | ${total(r => r.disagree)} | ${total(r => r.listed)} | ${total(r => r.pending)} | | |`)
  const reasons = new Map<string, number>()
  for (const r of results) for (const [reason, n] of r.pendingReasons) reasons.set(`${r.category}: ${reason}`, n)
  return [
    '| category | cases | agree | disagree | listed difference | not yet applicable | agree of judged | status |',
    '|---|---:|---:|---:|---:|---:|---:|---|',
    ...rows,
    '',
    'Not yet applicable:',
    ...[...reasons].map(([reason, n]) => `- ${reason}: ${n}`)
  ].join('\n')
}
