import t from 'tap'
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import type { FilterRule } from '@warren/protocol'
import { compileRoutes, emptySets, parseKernelTable, renderTableScript, type RouteForwarding } from '../src/firewall/ruleset.js'

/**
 * A subnet router's part of Warren's table: forward rules compiled into interval sets with
 * the destination (only inside the served routes), the forward hook's rules, masquerade on
 * request, and a digest the read-back finds again. The rendered table is checked by the
 * real `nft` in a namespace of its own when root.
 */
const fw: RouteForwarding = { routes: ['192.168.1.0/24', 'fd00:1::/64'], snat: true, lockedInterfaces: ['eth1'] }
const filter: FilterRule[] = [
  { srcs: ['100.64.0.2/32', 'fd7a:115c:a1e0::2/128'], protos: [6], ports: [{ first: 443, last: 443 }, { first: 8000, last: 8100 }], dsts: ['192.168.1.7/32'] },
  { srcs: ['100.64.0.3/32'], protos: [1, 6], ports: [{ first: 0, last: 65535 }], dsts: ['192.168.1.0/24'] },
  { srcs: ['fd7a:115c:a1e0::2/128'], protos: [17], ports: [{ first: 53, last: 53 }], dsts: ['fd00:1::/64'] },
  { srcs: ['*'], protos: [6], ports: [{ first: 22, last: 22 }], dsts: ['10.9.0.0/16'] }
]

t.test('forward rules become set elements with their destination, inside the served routes only', async t => {
  const c = compileRoutes(filter, fw)!
  t.same(c.sets.route4, ['100.64.0.2 . 6 . 443 . 192.168.1.7/32', '100.64.0.2 . 6 . 8000-8100 . 192.168.1.7/32'], 'source . proto . port . destination')
  t.same(c.sets.route4p, ['100.64.0.3 . 1 . 192.168.1.0/24', '100.64.0.3 . 6 . 192.168.1.0/24'], 'every port, and ICMP, without a port field')
  t.same(c.sets.route6, ['fd7a:115c:a1e0::2 . 17 . 53 . fd00:1::/64'], 'IPv6 alike; an IPv6 source never pairs with an IPv4 destination')
  t.notOk(JSON.stringify(c.sets).includes('10.9.0.0'), 'a destination outside the served routes is left out')
  t.same(c.served, { 4: ['192.168.1.0/24'], 6: ['fd00:1::/64'] })
  t.equal(compileRoutes([...filter].reverse(), fw)!.digest, c.digest, 'the same rules in another order give the same table')
  t.not(compileRoutes(filter, { ...fw, snat: false })!.digest, c.digest, 'the digest follows the masquerade setting')
  t.equal(compileRoutes(filter, { ...fw, routes: [] }), undefined, 'a node that serves nothing has no router part')
  t.throws(() => compileRoutes([{ ...filter[0]!, dsts: ['printer'] }], fw), /filter\[0\]\.dsts\[0\]: "printer" is not a CIDR/)
})

t.test('the table judges forwarded mesh traffic by the route sets, masquerades and locks', async t => {
  const c = compileRoutes(filter, fw)!
  const script = renderTableScript(emptySets(), { table: 'warren', interfaceName: 'wg0', routes: c })
  t.match(script, /iifname "wg0" ip daddr \{ 192\.168\.1\.0\/24 \} jump routed4 comment "warren routes [0-9a-f]{16}"/, 'mesh traffic into the subnet is judged by routed4')
  t.match(script, /iifname "wg0" ip6 daddr \{ fd00:1::\/64 \} jump routed6\n/, 'and IPv6 by routed6')
  t.match(script, /oifname "wg0" ip saddr \{ 192\.168\.1\.0\/24 \} accept/, 'replies from the subnet pass without flow state')
  t.match(script, /iifname \{ "eth1" \} oifname != "wg0" drop/, 'what arrives on the locked LAN interface is forwarded only into the mesh')
  t.match(script, /type nat hook postrouting priority srcnat - 10;[\s\S]*iifname "wg0" ip daddr \{ 192\.168\.1\.0\/24 \} masquerade/, 'forwarded traffic is masqueraded')
  t.notMatch(renderTableScript(emptySets(), { table: 'warren', interfaceName: 'wg0', routes: compileRoutes(filter, { ...fw, snat: false })! }), /masquerade/, 'not with snat off')
  t.notMatch(renderTableScript(emptySets(), { table: 'warren', interfaceName: 'wg0' }), /routed4|route4/, 'a node that routes nothing has none of it')
})

const root = process.getuid?.() === 0
t.test('the kernel takes the table and reads its digest back', { skip: root ? false : 'needs root for a network namespace' }, async t => {
  const ns = `wrt-${randomBytes(3).toString('hex')}`
  execFileSync('ip', ['netns', 'add', ns])
  t.teardown(() => { execFileSync('ip', ['netns', 'del', ns]) })
  const c = compileRoutes(filter, fw)!
  const nft = (args: string[], input?: string): string => execFileSync('ip', ['netns', 'exec', ns, 'nft', ...args], { input, encoding: 'utf8' })
  nft(['-f', '-'], renderTableScript(emptySets(), { table: 'warrentest', interfaceName: 'wg0', routes: c }))
  const back = parseKernelTable(nft(['-j', '-n', 'list', 'table', 'inet', 'warrentest']))
  t.equal(back.routesDigest, c.digest, 'the read-back finds the digest, so a restarted daemon knows the table holds these routes')
})
