import t from 'tap'
import { checkRoute, checkRoutes, servedRoutes, forwardAllows, filterAllows, type FilterRule } from '../src/index.js'

t.test('checkRoute accepts subnets in canonical form and refuses the rest, saying how to fix it', async t => {
  t.equal(checkRoute('192.168.1.0/24'), '192.168.1.0/24')
  t.equal(checkRoute('fd00:1:0::/64'), 'fd00:1::/64', 'IPv6 in RFC 5952 form')
  t.equal(checkRoute('10.1.2.3/32'), '10.1.2.3/32', 'one host is a route too')
  const refused: Array<[string, RegExp]> = [
    ['192.168.1.1/24', /host bits set: did you mean 192\.168\.1\.0\/24\?/],
    ['192.168.1.1', /has no prefix length: write a subnet such as 192\.168\.1\.1\/32/],
    ['printer/24', /is not an IPv4 or IPv6 CIDR/],
    ['10.0.0.0/33', /is not an IPv4 or IPv6 CIDR/],
    ['100.64.0.0/10', /overlaps the mesh's own IPv4 range \(100\.64\.0\.0\/10\)/],
    ['100.0.0.0/8', /overlaps the mesh's own IPv4 range/],
    ['127.0.0.0/8', /overlaps loopback/],
    ['169.254.0.0/16', /overlaps link-local/],
    ['fe80::/64', /overlaps link-local/],
    ['224.0.0.0/8', /overlaps multicast/]
  ]
  for (const [text, why] of refused) t.throws(() => checkRoute(text, 'advertiseRoutes[0]'), { code: 'bad_route', field: 'advertiseRoutes[0]', message: why }, text)
  t.throws(() => checkRoute('fd7a:115c:a1e0:5::/64', 'routes', 'fd7a:115c:a1e0::7'), /overlaps the mesh's own IPv6 range \(fd7a:115c:a1e0::\/48\)/, 'the mesh\'s /48 when known')
  t.same(checkRoutes(['::/0', '10.0.0.0/8', '0.0.0.0/0']), ['0.0.0.0/0', '10.0.0.0/8', '::/0'], 'an exit node offers both default routes')
  t.throws(() => checkRoutes(['0.0.0.0/0'], 'approve-routes'), { field: 'approve-routes', message: /default route, half of an exit node: give 0\.0\.0\.0\/0 and ::\/0 together/ }, 'one alone is refused')
  t.throws(() => checkRoutes(['::/0']), /half of an exit node/)
  t.same(checkRoutes(['fd00:1::/64', '192.168.1.0/24', '10.0.0.0/8', '192.168.1.0/24']), ['10.0.0.0/8', '192.168.1.0/24', 'fd00:1::/64'], 'sorted, IPv4 first, repeats dropped')
  const field = (() => { try { checkRoutes(['10.0.0.0/8', '1.2.3.4/24']) } catch (e) { return (e as { field?: string }).field } })()
  t.equal(field, 'routes[1]', 'the field names the bad entry')
})

t.test('a node serves the routes it advertises that are approved', async t => {
  t.same(servedRoutes({ advertisedRoutes: ['10.0.0.0/8', '192.168.1.0/24'], approvedRoutes: ['192.168.1.0/24', '172.16.0.0/12'] }), ['192.168.1.0/24'])
  t.same(servedRoutes({}), [])
})

t.test('forward rules judge forwarded packets by destination too, and never inbound ones', async t => {
  const filter: FilterRule[] = [
    { srcs: ['100.64.0.2'], protos: [6], ports: [{ first: 22, last: 22 }] },
    { srcs: ['100.64.0.2'], protos: [6], ports: [{ first: 443, last: 443 }], dsts: ['192.168.1.0/24'] }
  ]
  t.ok(forwardAllows(filter, { src: '100.64.0.2', dst: '192.168.1.9', proto: 6, dport: 443 }))
  t.notOk(forwardAllows(filter, { src: '100.64.0.2', dst: '192.168.2.9', proto: 6, dport: 443 }), 'another destination')
  t.notOk(forwardAllows(filter, { src: '100.64.0.2', dst: '192.168.1.9', proto: 6, dport: 22 }), 'an inbound rule forwards nothing')
  t.notOk(forwardAllows(filter, { src: '100.64.0.2', proto: 6, dport: 443 }), 'no destination, no verdict to forward')
  t.notOk(filterAllows(filter, { src: '100.64.0.2', proto: 6, dport: 443 }), 'a forward rule lets nothing in to the node')
  t.ok(filterAllows(filter, { src: '100.64.0.2', proto: 6, dport: 22 }))
})
