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

t.test('status shows each peer\'s path: direct with latency, relayed with the relay, or none', async tt => {
  const { formatStatus, formatPath } = await import('../src/commands/local-status.js')
  tt.equal(formatPath({ kind: 'direct', endpoint: '198.51.100.2:41641', latencyMs: 3.25 }), 'direct 3.3 ms')
  tt.equal(formatPath({ kind: 'udp-relay', endpoint: '192.0.2.1:40000', relay: 'r1', latencyMs: 31 }), 'udp-relay r1 31 ms')
  tt.equal(formatPath({ kind: 'tls-relay', endpoint: '127.0.0.1:5000' }), 'tls-relay')
  tt.equal(formatPath(undefined), '-')
  const peer = { id: 'n1', name: 'db', fqdn: 'db.warren.internal', tags: [], ipv4: '100.64.0.2', ipv6: 'fd7a:115c:a1e0::2', wgKey: 'A'.repeat(43) + '=', online: true, rxBytes: 0, txBytes: 0 }
  const text = formatStatus({
    version: 1, backendState: 'Running', health: [], interfaceName: 'wrn0',
    peers: [{ ...peer, path: { kind: 'tls-relay', endpoint: '127.0.0.1:5000' } }, { ...peer, name: 'web', endpoint: '198.51.100.2:41641' }]
  })
  tt.match(text, /PATH\s+ENDPOINT/)
  tt.match(text, /db\s+100\.64\.0\.2\s+yes\s+-\s+tls-relay\s+127\.0\.0\.1:5000/)
  tt.match(text, /web\s+100\.64\.0\.2\s+yes\s+-\s+-\s+198\.51\.100\.2:41641/)
})
