import t from 'tap'
import type { LocalWhoisResponse } from '@warren/protocol'
import { formatWhois } from '../src/commands/local-whois.js'

const base: LocalWhoisResponse = {
  node: { id: 'n1', name: 'laptop', fqdn: 'laptop.warren.internal', ipv4: '100.64.0.3', ipv6: 'fd7a:115c:a1e0::3', tags: [] },
  user: 'alice',
  tags: [],
  self: false
}

t.test('whois lists each capability the caller holds here, with its values as JSON', async t => {
  const text = formatWhois({ ...base, capabilities: { 'example.com/cap/web': [{ role: 'admin' }, { role: 'viewer' }], 'example.com/cap/audit': [] } })
  t.match(text, /^user: alice$/m)
  t.match(text, /^capabilities:\n {2}example\.com\/cap\/web: \[\{"role":"admin"\},\{"role":"viewer"\}\]\n {2}example\.com\/cap\/audit: \[\]$/m)
  t.match(formatWhois({ ...base, capabilities: {} }), /^capabilities: -$/m, 'none is said as -')
  t.match(formatWhois(base), /^capabilities: -$/m, 'and so is an older daemon\'s answer without them')
  t.notMatch(formatWhois({ ...base, capabilities: { 'example.com/cap/x': [{ note: '\u001b[31mred' }] } }), /\u001b/, 'values cannot reach the terminal as escape codes')
})
