/**
 * Punching does not need the nodes' clocks to agree: a cone/cone pair that starts behind
 * a cut direct path (on the relay), one node's clock 20 s ahead, goes direct on the first
 * retry after the cut is removed. The two nodes' retries line up through call-me-maybe
 * over the controller, not through the wall clock, so the node that is ahead does not
 * probe alone (see PathTimings.retryMs in the node package). The skew stays inside the
 * 30 s that path probes and relay binds allow for replay protection.
 */
import t from 'tap'
import { PATH_TIMINGS_ENV } from '@warren/node'
import { createLocalClient } from '@warren/sdk'
import { createMesh, createNatLab, netnsSkipReason, type MeshNode } from '../src/index.js'
import { joinPair, checkPathInUse, checkPings, waitForPath, cutDirectPath } from '../src/path-checks.js'
import { skewedClockEnv } from '../src/skewed-clock.js'

const skip = netnsSkipReason()

/** callsHeard is how many call-me-maybe messages a daemon has had from the controller, by its metrics. */
async function callsHeard (n: MeshNode): Promise<number> {
  const text = await createLocalClient({ socketPath: n.socket }).metrics()
  return Number(/^warren_node_map_messages_total\{type="call-me-maybe"\} (\d+)$/m.exec(text)?.[1] ?? 0)
}

/** SKEW_MS is how far y1's clock is ahead of x1's. */
const SKEW_MS = 20_000

t.test('with one node\'s clock 20 s ahead, a pair that started behind a cut goes direct soon after the cut is removed', { skip, timeout: 580_000 }, async t => {
  const lab = await createNatLab(t, { sides: [{ name: 'x', nat: 'cone' }, { name: 'y', nat: 'cone' }] })
  const mesh = await createMesh(t, { hosts: [], lab })
  const restore = await cutDirectPath(lab, 'x', 'y')
  // Retries every 40 s (no back-off past the first), so how soon does not depend on when the cut goes.
  const timings = { [PATH_TIMINGS_ENV]: JSON.stringify({ retryMaxMs: 40_000 }) }
  const [a, b] = await joinPair(mesh, ['x1', 'y1'], { x1: timings, y1: { ...timings, ...skewedClockEnv(SKEW_MS) } })
  const ahead = JSON.parse((await b.host.exec([process.execPath, '-e', 'console.log(Date.now())'], { env: skewedClockEnv(SKEW_MS) })).stdout) as number - Date.now()
  t.ok(ahead >= SKEW_MS - 1000, `a process started like y1's daemon runs ${ahead} ms ahead`)
  await waitForPath(a, b, 'udp-relay', 120_000)
  await waitForPath(b, a, 'udp-relay', 120_000)
  t.pass('on the relay while the direct path is cut')
  // The bursts the nodes started as they met end burstMs (5 s) later; removed after them,
  // the cut can only be found by a retry. Nothing to observe but time here: the bursts are
  // what a lab would watch for, and they stop on their own.
  await new Promise(resolve => setTimeout(resolve, 8000))

  const before = await callsHeard(a) + await callsHeard(b)
  t.ok(before >= 2, `the bursts as the nodes met called each other in (${before} calls heard)`)
  await restore()
  const removed = Date.now()
  await waitForPath(a, b, 'direct', 120_000)
  t.comment(`x1 went direct ${Date.now() - removed} ms after the cut was removed`)
  await waitForPath(b, a, 'direct', 60_000)
  const after = await callsHeard(a) + await callsHeard(b)
  t.ok(after > before, `the retry that found the path was called in (${after - before} more calls heard)`)
  await checkPathInUse(t, mesh, a, b, lab.side('y').publicAddress)
  await checkPings(t, a, b)
})
