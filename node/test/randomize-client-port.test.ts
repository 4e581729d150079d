import t, { type Test } from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { createEngineDataPlane } from '../src/daemon/system-data-plane.js'
import { createFakeWireGuard, createFakeRouter, createFakeFirewall, createFakeCommandRunner } from '../src/testing.js'
import { netmapFor, testNode } from './engine-netmap-fixtures.js'

/**
 * randomize-client-port (the policy's nodeAttrs or randomizeClientPort): a node that has it
 * brings WireGuard up on any free UDP port instead of the configured one.
 */
const IFACE = 'wgrand0'
const CONFIGURED = 41641
const RANDOM = 50321

async function upWith (t: Test, attrs: Record<string, unknown[]> | undefined): Promise<{ asked: number[], listenPort: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'warrend-randport-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const asked: number[] = []
  const wireguard = createFakeWireGuard({ interfaceName: IFACE })
  const dns = { set: async () => {}, close: async () => {}, release: async () => {} }
  const plane = createEngineDataPlane({
    wireguard, router: createFakeRouter({ interfaceName: IFACE }), firewall: createFakeFirewall(), dns, runner: createFakeCommandRunner(),
    sharedPort: false,
    freePort: async want => { asked.push(want); return want === 0 ? RANDOM : want }
  }, {
    stateDir: dir, interfaceName: IFACE, wireguardMode: 'userspace', privateKey: testNode(1).privateKey, listenPort: CONFIGURED,
    runner: createFakeCommandRunner(), logger: pino({ level: 'silent' })
  })
  const self = testNode(1, attrs === undefined ? {} : { attrs })
  await plane.apply(netmapFor(self, []))
  t.equal(plane.listenPort(), (await wireguard.status()).listenPort, 'WireGuard listens where the node says it does')
  return { asked, listenPort: plane.listenPort() }
}

t.test('without the attribute WireGuard takes the configured port', async t => {
  t.same(await upWith(t, undefined), { asked: [CONFIGURED], listenPort: CONFIGURED })
  t.same(await upWith(t, { 'custom:other': [] }), { asked: [CONFIGURED], listenPort: CONFIGURED }, 'other attributes change nothing')
})

t.test('with randomize-client-port WireGuard takes any free port', async t => {
  t.same(await upWith(t, { 'randomize-client-port': [] }), { asked: [0], listenPort: RANDOM })
})
