/**
 * A direct path over IPv6 with a real controller and daemons: two nodes that share only an
 * IPv6 network (global addresses, no NAT, no IPv4 route between them) find each other's
 * IPv6 candidates, probe them through the shared WireGuard port over IPv6, and set the
 * IPv6 address as WireGuard's endpoint; the policy is enforced on that path as on any.
 *
 *   a --(backbone, IPv4)-- ctl --(v4b, IPv4)-- b        ctl forwards nothing
 *   a --------------(v6, IPv6 only)------------ b
 */
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { BACKBONE, createMesh, createTopology, netnsSkipReason, type Host } from '../src/index.js'
import { checkPathInUse, checkPings, checkPolicy, joinPair } from '../src/path-checks.js'

const skip = netnsSkipReason()

/** ipv6Only takes the IPv4 address off a host's interface and gives it `address`/64 instead. */
async function ipv6Only (host: Host, ifname: string, address: string): Promise<void> {
  await host.exec(['ip', '-4', 'addr', 'flush', 'dev', ifname])
  await host.exec(['ip', '-6', 'addr', 'add', `${address}/64`, 'dev', ifname, 'nodad'])
}

t.test('two nodes with only IPv6 between them go direct over IPv6; the policy holds on that path', { skip, timeout: 580_000 }, async t => {
  const topology = await createTopology(t, { hosts: [] })
  const ctl = await topology.addHost('ctl', { networks: [BACKBONE, 'v4b'] })
  const a = await topology.addHost('a', { networks: [BACKBONE, 'v6'] })
  const b = await topology.addHost('b', { networks: ['v4b', 'v6'] })
  // b reaches the controller's backbone address through ctl, which routes nothing on.
  await ctl.exec(['sysctl', '-q', '-w', 'net.ipv4.ip_forward=0'])
  await b.exec(['ip', 'route', 'add', topology.networks.find(n => n.name === BACKBONE)!.subnet, 'via', ctl.interfaces[1]!.address])
  const prefix = `2001:db8:${randomBytes(2).toString('hex')}`
  await ipv6Only(a, 'eth1', `${prefix}::1`)
  await ipv6Only(b, 'eth1', `${prefix}::2`)
  t.notOk((await a.exec(['ping', '-c', '1', '-W', '1', b.address], { allowFail: true })).exitCode === 0, 'no IPv4 between a and b')

  const mesh = await createMesh(t, { hosts: [], lab: { topology, controller: ctl } })
  const [na, nb] = await joinPair(mesh, ['a', 'b'])
  await checkPathInUse(t, mesh, na, nb, `[${prefix}::2]`)
  await checkPathInUse(t, mesh, nb, na, `[${prefix}::1]`)
  await checkPings(t, na, nb)
  await checkPolicy(t, na, nb)
})
