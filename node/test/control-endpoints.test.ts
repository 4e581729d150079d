import t from 'tap'
import type { NetworkInterfaceInfo } from 'node:os'
import { egressAddresses, localEndpoints } from '../src/control/endpoints.js'

const addr = (address: string, internal = false): NetworkInterfaceInfo => ({
  address, internal, netmask: '', mac: '00:00:00:00:00:00', cidr: null,
  ...(address.includes(':') ? { family: 'IPv6' as const, scopeid: 0 } : { family: 'IPv4' as const })
})

t.test('endpoints are the non-mesh, non-loopback addresses with the WireGuard port', async t => {
  const table = {
    lo: [addr('127.0.0.1', true), addr('::1', true)],
    eth0: [addr('192.0.2.10'), addr('fe80::1%eth0'), addr('2001:db8::10')],
    eth1: [addr('10.1.2.3')],
    wg0: [addr('100.64.0.5'), addr('fd7a:115c:a1e0:ab12::5')],
    docker0: [addr('100.70.0.1')]
  }
  t.same(localEndpoints({ meshInterface: 'wg0', listenPort: 41641, interfaces: () => table }),
    ['10.1.2.3:41641', '192.0.2.10:41641', '[2001:db8::10]:41641'],
    'no loopback, link-local, mesh interface or CGNAT mesh range; IPv6 in brackets; sorted')
  t.same(localEndpoints({ meshInterface: 'wg0', listenPort: 5000, interfaces: () => ({ eth0: [addr('192.0.2.10')] }) }), ['192.0.2.10:5000'])
})

t.test('egress addresses: per interface, the first IPv4; for IPv6 a global one before a ULA, never link-local or the mesh', async t => {
  const table = {
    lo: [addr('127.0.0.1', true), addr('::1', true)],
    eth0: [addr('192.0.2.10'), addr('192.0.2.11'), addr('fe80::1%eth0'), addr('fd00:1::10'), addr('2001:db8::10'), addr('2001:db8::11')],
    eth1: [addr('10.1.2.3'), addr('fd00:2::3')],
    eth2: [addr('fe80::2%eth2')],
    wg0: [addr('100.64.0.5'), addr('fd7a:115c:a1e0:ab12::5')]
  }
  const init = { meshInterface: 'wg0', interfaces: () => table }
  t.same(egressAddresses(init), { eth0: '192.0.2.10', eth1: '10.1.2.3' }, 'IPv4 by default')
  t.same(egressAddresses(init, 6), { eth0: '2001:db8::10', eth1: 'fd00:2::3' }, 'IPv6: global first, a ULA where there is no global one; eth2 has only link-local')
})
