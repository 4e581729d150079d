/**
 * Path selection with a real controller and daemons on one network, and behind one NAT:
 * the daemons probe each other from the WireGuard port (the shared port), confirm a
 * direct path when probes are answered, set it as WireGuard's endpoint and show it in
 * `warren status`; the policy is enforced on that path as on any other.
 */
import t from 'tap'
import { createMesh, createNatLab, netnsSkipReason } from '../src/index.js'
import { joinPair, checkPathInUse, checkPolicy } from '../src/path-checks.js'

const skip = netnsSkipReason()

t.test('flat network: the daemons confirm a direct path by probes and use it', { skip, timeout: 580_000 }, async t => {
  const mesh = await createMesh(t, { hosts: ['a', 'b'] })
  const [a, b] = await joinPair(mesh, ['a', 'b'])
  await checkPathInUse(t, mesh, a, b, b.host.address)
  await checkPathInUse(t, mesh, b, a, a.host.address)
  await checkPolicy(t, a, b)
})

t.test('two nodes behind one NAT go direct over their LAN addresses', { skip, timeout: 580_000 }, async t => {
  const lab = await createNatLab(t, { sides: [{ name: 'l', nat: 'cone', nodes: 2 }] })
  const mesh = await createMesh(t, { hosts: [], lab })
  const [a, b] = await joinPair(mesh, ['l1', 'l2'])
  await checkPathInUse(t, mesh, a, b, b.host.address)
  await checkPathInUse(t, mesh, b, a, a.host.address)
  await checkPolicy(t, a, b)
})
