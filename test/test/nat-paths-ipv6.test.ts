/**
 * IPv6 paths with a real controller and daemons: two nodes that share only an IPv6
 * network (global addresses, no NAT, no IPv4 route between them) learn their IPv6
 * mapping from STUN over IPv6, find each other's IPv6 candidates, probe them through the
 * shared WireGuard port over IPv6, and set the IPv6 address as WireGuard's endpoint; when
 * the direct path is cut they move to the kernel UDP relay over IPv6. The policy is
 * enforced on each path as on any.
 *
 *   a --(backbone, IPv4)-- ctl --(v4b, IPv4)-- b        ctl routes nothing between them
 *   a ------------------(v6, IPv6 only)------------------ b
 *                           ctl (relay and its STUN on IPv6)
 */
import t from 'tap'
import type { LocalNetcheck } from '@warren/protocol'
import { BACKBONE, createMesh, createTopology, netnsSkipReason, testIpv6Prefix, type Host } from '../src/index.js'
import { checkPathInUse, checkSettledPings, checkPolicy, checkRelayed, joinPair, peerOf } from '../src/path-checks.js'

const skip = netnsSkipReason()

/** ipv6Only takes the IPv4 address off a host's interface and gives it `address`/64 instead. */
async function ipv6Only (host: Host, ifname: string, address: string): Promise<void> {
  await host.exec(['ip', '-4', 'addr', 'flush', 'dev', ifname])
  await host.exec(['ip', '-6', 'addr', 'add', `${address}/64`, 'dev', ifname, 'nodad'])
}

/** CUT_TABLE is the nftables table (in node a's namespace) that cuts a's UDP to and from b's IPv6 address. */
const CUT_TABLE = 'v6cut'

t.test('two nodes with only IPv6 between them: STUN over IPv6, a direct IPv6 path, the kernel relay over IPv6 when it is cut; the policy holds', { skip, timeout: 580_000 }, async t => {
  const topology = await createTopology(t, { hosts: [] })
  const ctl = await topology.addHost('ctl', { networks: [BACKBONE, 'v4b', 'v6'] })
  const a = await topology.addHost('a', { networks: [BACKBONE, 'v6'] })
  const b = await topology.addHost('b', { networks: ['v4b', 'v6'] })
  // b reaches the controller's backbone address through ctl; a has no route to b's IPv4 network.
  await b.exec(['ip', 'route', 'add', topology.networks.find(n => n.name === BACKBONE)!.subnet, 'via', ctl.interfaces[1]!.address])
  const prefix = testIpv6Prefix()
  const [a6, b6, ctl6] = [`${prefix}::1`, `${prefix}::2`, `${prefix}::3`]
  await ipv6Only(a, 'eth1', a6)
  await ipv6Only(b, 'eth1', b6)
  await ipv6Only(ctl, 'eth2', ctl6)
  t.notOk((await a.exec(['ping', '-c', '1', '-W', '1', b.address], { allowFail: true })).exitCode === 0, 'no IPv4 between a and b')

  // The embedded relay on the controller's IPv6 address: the map lists it as a STUN server too.
  const mesh = await createMesh(t, { hosts: [], lab: { topology, controller: ctl }, controllerArgs: ['--relay-host', ctl6] })
  const [na, nb] = await joinPair(mesh, ['a', 'b'])

  const netcheck = JSON.parse((await mesh.warren(['netcheck', '--json', '--socket', na.socket], { host: a })).stdout) as LocalNetcheck
  t.same(netcheck.ipv6, { udp: true, mappings: [`[${a6}]:${netcheck.wgPort}`] }, 'STUN over IPv6 (the relay\'s port) sees a\'s own address and WireGuard port: no NAT')
  t.equal(netcheck.udp, true, 'and STUN over IPv4 (the controller\'s ports) still answers')
  t.match((await mesh.warren(['netcheck', '--socket', na.socket], { host: a })).stdout, new RegExp(`^IPv6: +yes, mapping \\[${a6}\\]:${netcheck.wgPort}$`, 'm'), 'warren netcheck shows it')

  await checkPathInUse(t, mesh, na, nb, `[${b6}]`)
  await checkPathInUse(t, mesh, nb, na, `[${a6}]`)
  // Both nodes were on the relay a moment ago.
  await checkSettledPings(t, na, nb, 'over the direct IPv6 path')
  t.match((await peerOf(na, nb))?.path?.endpoint, `[${b6}]:`, 'and the path is still the direct one')
  await checkPolicy(t, na, nb)

  await a.exec(['nft', '-f', '-'], {
    input: `table inet ${CUT_TABLE} {\n chain out {\n  type filter hook output priority 0; policy accept;\n  ip6 daddr ${b6} meta l4proto udp drop\n }\n` +
      ` chain in {\n  type filter hook input priority 0; policy accept;\n  ip6 saddr ${b6} meta l4proto udp drop\n }\n}\n`
  })
  await checkRelayed(t, na, nb, 'udp-relay', `[${ctl6}]`)
  await checkSettledPings(t, na, nb, 'over the IPv6 relay')
  await checkPolicy(t, na, nb)
})
