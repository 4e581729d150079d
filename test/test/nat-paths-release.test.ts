/**
 * The kernel relay's allocation follows the direct path, with a real controller
 * (embedded relay) and daemons in the NAT lab: once a cone/cone pair's direct path has
 * held for udpRelayIdleMs (shortened here), the allocation is released and its forwards
 * leave the relay's nftables table; cutting the direct path then brings a relay back at
 * the first unanswered heartbeat, and traffic flows over it.
 */
import t from 'tap'
import { PATH_TIMINGS_ENV } from '@warren/node'
import { createMesh, createNatLab, netnsSkipReason, waitFor } from '../src/index.js'
import { canConnect } from '../src/mesh.js'
import { joinPair, checkPathInUse, checkPings, waitForPath, cutDirectPath, relayPorts } from '../src/path-checks.js'

const skip = netnsSkipReason()

/** IDLE_MS stands in for the default five minutes of udpRelayIdleMs. */
const IDLE_MS = 10_000

t.test('a relay allocation is released once the direct path held, and comes back when the direct path is cut', { skip, timeout: 580_000 }, async t => {
  const lab = await createNatLab(t, { sides: [{ name: 'x', nat: 'cone' }, { name: 'y', nat: 'cone' }] })
  const mesh = await createMesh(t, { hosts: [], lab })
  const env = { [PATH_TIMINGS_ENV]: JSON.stringify({ udpRelayIdleMs: IDLE_MS }) }
  const [a, b] = await joinPair(mesh, ['x1', 'y1'], { x1: env, y1: env })
  const relay = lab.controller

  // Both nodes ask for the relay as they meet, before a direct path answers.
  const held = await waitFor(async () => { const p = await relayPorts(relay); return p.allocated.length === 2 ? p : undefined },
    { timeoutMs: 60_000, message: 'the pair\'s two ports allocated at the relay' })
  t.comment(`relay ports ${held.allocated.join(', ')}`)
  await checkPathInUse(t, mesh, a, b, lab.side('y').publicAddress)
  await waitForPath(b, a, 'direct')

  const direct = Date.now()
  await mesh.controller.waitForLine(/"code":"released".*"msg":"relay allocation revoked"/, 120_000)
  t.comment(`released ${Date.now() - direct} ms after both went direct (udpRelayIdleMs ${IDLE_MS})`)
  t.same(await relayPorts(relay), { allocated: [], bound: [] }, 'the relay forwards nothing for the pair any more')
  t.equal((await waitForPath(a, b, 'direct')).kind, 'direct', 'the pair stays direct')
  await checkPings(t, a, b)

  // The core drops UDP between the two NATs: the relay (off the core, on the backbone) still works.
  const restore = await cutDirectPath(lab, 'x', 'y')
  const cut = Date.now()
  const relayed = await waitForPath(a, b, 'udp-relay', 60_000)
  t.comment(`x1 on a new UDP relay allocation ${Date.now() - cut} ms after the cut`)
  const again = await relayPorts(relay)
  t.equal(again.allocated.length, 2, 'a new allocation at the relay')
  t.ok(again.allocated.includes(Number(relayed.endpoint.split(':').at(-1))), `x1's endpoint ${relayed.endpoint} is one of its ports`)
  await waitForPath(b, a, 'udp-relay', 60_000)
  await waitFor(async () => (await relayPorts(relay)).bound.length === 2, { timeoutMs: 60_000, message: 'both sides bound at the relay' })
  await waitFor(async () => await canConnect(a.host, b.ipv4, 80, 2000), { timeoutMs: 60_000, message: 'x1 -> y1:80 over the relay' })
  await checkPings(t, a, b)
  t.notOk(await canConnect(a.host, b.ipv4, 22, 1000), 'x1 -> y1:22 stays denied on the relayed path')
  await restore()
})
