/**
 * Path selection with the kernel UDP relay, real controller (embedded relay) and daemons
 * in the NAT lab: behind a symmetric NAT no punch works and the peers use the relay; a
 * direct path cut mid-transfer falls back to the relay and comes back when it returns.
 * The policy is enforced on the relayed path as on the direct one.
 */
import t from 'tap'
import { createMesh, createNatLab, netnsSkipReason, waitFor } from '../src/index.js'
import { canConnect } from '../src/mesh.js'
import { joinPair, checkPathInUse, checkPolicy, waitForPath, cutDirectPath } from '../src/path-checks.js'

const skip = netnsSkipReason()

t.test('symmetric NAT on one side: the peers go through the kernel UDP relay', { skip, timeout: 580_000 }, async t => {
  const lab = await createNatLab(t, { sides: [{ name: 'x', nat: 'symmetric' }, { name: 'y', nat: 'cone' }] })
  const mesh = await createMesh(t, { hosts: [], lab })
  const [a, b] = await joinPair(mesh, ['x1', 'y1'])
  const relayed = await waitForPath(a, b, 'udp-relay')
  t.match(relayed.endpoint, new RegExp(`^${lab.controller.address.replaceAll('.', '\\.')}:\\d+$`), 'the endpoint is a port on the relay')
  t.equal(relayed.relay, 'controller', 'the embedded relay')
  await waitForPath(b, a, 'udp-relay')
  await checkPolicy(t, a, b)
})

t.test('a direct path cut mid-transfer falls back to the relay, and comes back when it returns', { skip, timeout: 580_000 }, async t => {
  const lab = await createNatLab(t, { sides: [{ name: 'x', nat: 'cone' }, { name: 'y', nat: 'cone' }] })
  const mesh = await createMesh(t, { hosts: [], lab })
  const [a, b] = await joinPair(mesh, ['x1', 'y1'])
  await checkPathInUse(t, mesh, a, b, lab.side('y').publicAddress)
  // The core drops UDP between the two NATs: the relay (off the core, on the backbone) still works.
  const restore = await cutDirectPath(lab, 'x', 'y')
  const started = Date.now()
  await waitForPath(a, b, 'udp-relay', 60_000)
  t.comment(`x1 moved to the relay ${Date.now() - started} ms after the cut`)
  await waitFor(async () => await canConnect(a.host, b.ipv4, 80, 2000), { timeoutMs: 60_000, message: 'x1 -> y1:80 over the relay' })
  t.notOk(await canConnect(a.host, b.ipv4, 22, 1000), 'x1 -> y1:22 stays denied on the relayed path')
  await restore()
  await waitForPath(a, b, 'direct', 180_000)
  t.pass('back on the direct path once it works again')
})
