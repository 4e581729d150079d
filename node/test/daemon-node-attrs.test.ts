import t from 'tap'
import { promises as fs, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { startDaemon } from '../src/daemon/daemon.js'
import { createEngineDataPlane } from '../src/daemon/system-data-plane.js'
import { createFakeWireGuard, createFakeRouter, createFakeFirewall, createFakeCommandRunner } from '../src/testing.js'
import { startFakeController, fakePeer, until } from './daemon-fake-controller.js'

const KEY = `wrnauth-0123456789ab-${'c'.repeat(32)}`
const IFACE = 'wgattrs0'

// Apps on a node read the attributes the policy gave it (nodeAttrs) from the LocalAPI
// status; they follow the map's self as it changes.
t.test('the node\'s own attributes reach its LocalAPI status and follow the map', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'warrend-attrs-'))
  const ctl = await startFakeController()
  ctl.peers = [fakePeer(2)]
  const dns = { set: async () => {}, close: async () => {}, release: async () => {} }
  const d = await startDaemon({
    stateDir: join(dir, 'state'), socketPath: join(dir, 'd.sock'), interfaceName: IFACE, wireguardMode: 'userspace',
    logger: pino({ level: 'silent' }), transport: ctl.transport, endpoints: () => [], backoff: { minMs: 10, maxMs: 50 },
    dataPlane: ctx => createEngineDataPlane({
      wireguard: createFakeWireGuard({ interfaceName: IFACE }), router: createFakeRouter({ interfaceName: IFACE }), firewall: createFakeFirewall(),
      dns, runner: createFakeCommandRunner(), sharedPort: false, freePort: async want => want
    }, ctx)
  })
  t.teardown(async () => {
    await d.close().catch(() => {})
    await ctl.close()
    await fs.rm(dir, { recursive: true, force: true })
  })
  await d.up({ controller: 'https://ctl.test:8443', authKey: KEY, hostname: 'laptop' })
  await until('Running', async () => (await d.status()).backendState === 'Running')
  const self = (await d.status()).self!
  t.equal(self.attrs, undefined, 'no attributes until the policy gives some')

  const attrs = { 'example.com/cap/dashboard': [{ role: 'viewer' }], 'randomize-client-port': [] }
  ctl.delta({ self: { ...self, attrs } })
  await until('attributes in the status', async () => JSON.stringify((await d.status()).self?.attrs) === JSON.stringify(attrs))
  t.same((await d.status()).self?.attrs, attrs)

  ctl.delta({ self })
  await until('attributes gone from the status', async () => (await d.status()).self?.attrs === undefined)
  t.pass('a self without attributes clears them')
})
