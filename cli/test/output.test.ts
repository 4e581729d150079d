import t from 'tap'
import { formatTable, relativeTime } from '../src/output.js'

t.test('formatTable aligns columns under upper-case headers', async tt => {
  const rows = [{ name: 'alice', n: 1 }, { name: 'bartholomew', n: 22 }]
  const text = formatTable(rows, [{ header: 'name', value: r => r.name }, { header: 'count', value: r => String(r.n) }])
  tt.equal(text, [
    'NAME         COUNT',
    'alice        1',
    'bartholomew  22',
    ''
  ].join('\n'))
  tt.notMatch(text, / \n/, 'no trailing blanks')
})

t.test('relativeTime says how long ago or how soon, in one unit', async tt => {
  const now = Date.parse('2026-01-10T12:00:00Z')
  const at = (ms: number): string => relativeTime(new Date(now + ms).toISOString(), now)
  tt.equal(at(-2000), 'just now')
  tt.equal(at(-42_000), '42s ago')
  tt.equal(at(-5 * 60_000), '5m ago')
  tt.equal(at(3 * 3_600_000), 'in 3h')
  tt.equal(at(24 * 3_600_000 - 1500), 'in 1d', 'a 24h key listed a moment later still says 1d')
  tt.equal(at(90 * 86_400_000), 'in 90d')
  tt.equal(at(-400 * 86_400_000), '2024-12-06', 'over a year away shows the date')
  tt.equal(relativeTime(undefined), '-')
  tt.equal(relativeTime('not a time'), 'not a time')
})
