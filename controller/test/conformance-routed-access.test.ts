import t from 'tap'
import { accessDifferences } from './conformance/access-set.js'
import { exitSpans, tailscaleAccessWithin, tailscaleRoutedAccess, warrenAccessWithin, warrenRoutedAccess } from './conformance/routed-access.js'

// The conformance runner compares what a subnet router forwards by meaning, not by text:
// these cases make sure it tells equal forwarding from different forwarding.
const router = { advertisedRoutes: ['10.33.0.0/16', 'fd00:33::/64'], approvedRoutes: ['10.33.0.0/16', 'fd00:33::/64'] }
const tsAny = [{ IPProto: [6], Srcs: ['100.64.0.0/10'], Dsts: [{ Net: '*', Ports: { First: 22, Last: 22 } }] }]

t.test('a Tailscale `*` destination is read inside the served subnets only', async t => {
  const want = tailscaleRoutedAccess(tsAny, router)
  const same = warrenRoutedAccess([{ srcs: ['100.64.0.0/10'], protos: [6], ports: [{ first: 22, last: 22 }], dsts: ['10.33.0.0/16'] }])
  t.same(accessDifferences(want, same), [], 'forwarding port 22 into the IPv4 subnet is what Tailscale allows there')
  t.same([...want.keys()], ['10.33.0.0-10.33.255.255 tcp'], 'an IPv6 subnet gets nothing from IPv4 sources')
})

t.test('the same forwarding split differently compares equal', async t => {
  const split = warrenRoutedAccess([
    { srcs: ['100.64.0.0/11', '100.96.0.0/11'], protos: [6], ports: [{ first: 22, last: 22 }], dsts: ['10.33.0.0/17'] },
    { srcs: ['100.64.0.0/10'], protos: [6], ports: [{ first: 22, last: 22 }], dsts: ['10.33.128.0/17'] }
  ])
  t.same(accessDifferences(tailscaleRoutedAccess(tsAny, router), split), [])
})

t.test('narrower destinations, other ports and forwards outside the subnets differ', async t => {
  const want = tailscaleRoutedAccess(tsAny, router)
  const rule = { srcs: ['100.64.0.0/10'], protos: [6], ports: [{ first: 22, last: 22 }] }
  const differs = (got: typeof want): boolean => accessDifferences(want, got).length > 0
  t.ok(differs(warrenRoutedAccess([{ ...rule, dsts: ['10.33.0.0/24'] }])), 'a /24 of the /16')
  t.ok(differs(warrenRoutedAccess([{ ...rule, ports: [{ first: 22, last: 23 }], dsts: ['10.33.0.0/16'] }])), 'port 23 too')
  t.ok(differs(warrenRoutedAccess([{ ...rule, dsts: ['10.33.0.0/16', '10.34.0.0/16'] }])), 'a subnet the router does not serve')
})

t.test('an exit node\'s forwards are read apart: its subnets, the internet, and the rest', async t => {
  const exitNode = { ipv4: '100.64.0.1', ipv6: 'fd7a:115c:a1e0::1', advertisedRoutes: ['10.33.0.0/16', '0.0.0.0/0', '::/0'], approvedRoutes: ['10.33.0.0/16', '0.0.0.0/0', '::/0'] }
  t.equal(exitSpans({ ...router, ipv4: '100.64.0.1', ipv6: 'fd7a:115c:a1e0::1' }), undefined, 'a router without exit routes has none')
  const { internet, beyond } = exitSpans(exitNode)!
  const rule = { srcs: ['100.64.0.0/10'], protos: [6], ports: [{ first: 22, last: 22 }] }
  const inInternet = (dsts: string[]): ReturnType<typeof warrenAccessWithin> => warrenAccessWithin([{ ...rule, dsts }], internet)
  t.same(accessDifferences(tailscaleAccessWithin(tsAny, internet), inInternet(['0.0.0.0/0'])), [], 'both read `*` as every internet range')
  t.ok(accessDifferences(tailscaleAccessWithin(tsAny, internet), inInternet(['0.0.0.0/1'])).length > 0, 'half of it differs')
  t.same([...inInternet(['192.168.0.0/16', '10.0.0.0/8'])], [], 'private ranges are not the internet')
  const lan = tailscaleAccessWithin([{ IPProto: [6], Srcs: ['*'], Dsts: [{ Net: '192.168.1.0/24', Ports: { First: 0, Last: 65535 } }] }], beyond)
  t.same([...lan.keys()], ['192.168.1.0-192.168.1.255 tcp'], 'its LAN is beyond the internet')
  const own = [{ IPProto: [6], Srcs: ['*'], Dsts: [{ Net: '10.33.1.0/24', Ports: { First: 0, Last: 65535 } }, { Net: '100.64.0.1/32', Ports: { First: 0, Last: 65535 } }] }]
  t.equal(tailscaleAccessWithin(own, beyond).size + tailscaleAccessWithin(own, internet).size, 0, 'its own address and its subnet are neither')
})
