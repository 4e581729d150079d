/**
 * Path selection with symmetric NATs on both sides, real controller (embedded kernel UDP
 * relay) and daemons in the NAT lab: neither mapping can be predicted, no punch works, and
 * both peers use the relay. Pings cross it and the policy is enforced on it.
 */
import t from 'tap'
import { createMesh, createNatLab, netnsSkipReason } from '../src/index.js'
import { joinPair, checkRelayed, checkPings, checkPolicy } from '../src/path-checks.js'

const skip = netnsSkipReason()

t.test('symmetric NAT on both sides: the peers go through the kernel UDP relay', { skip, timeout: 580_000 }, async t => {
  const lab = await createNatLab(t, { sides: [{ name: 'x', nat: 'symmetric' }, { name: 'y', nat: 'symmetric' }] })
  const mesh = await createMesh(t, { hosts: [], lab })
  const [a, b] = await joinPair(mesh, ['x1', 'y1'])
  await checkRelayed(t, a, b, 'udp-relay', lab.controller.address)
  await checkRelayed(t, b, a, 'udp-relay', lab.controller.address)
  await checkPings(t, a, b)
  await checkPolicy(t, a, b)
})
