import t from 'tap'
import { mkdtempSync, promises as fs } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { encodeStunBindingResponse, parseStunBindingRequest } from '@warren/protocol'
import { startDaemon } from '../src/daemon/daemon.js'
import { createFakeDataPlane, createFakeSharedPort } from '../src/testing.js'
import { startFakeController, until } from './daemon-fake-controller.js'

/**
 * The daemon's NAT monitor over a fake shared port: once the map lists STUN servers it runs
 * netcheck, sends the STUN-mapped endpoint to the controller with the local ones, re-sends
 * when the mapping moves, and leaves it out behind a symmetric NAT.
 */
t.test('the STUN-mapped endpoint joins the endpoints sent to the controller, and follows the mapping', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'warrend-nat-'))
  const ctl = await startFakeController()
  ctl.nat = { stun: [':3478', ':3479'], relays: [] }
  const port = createFakeSharedPort()
  let mapped = (_server: number): { address: string, port: number } => ({ address: '198.51.100.7', port: 41641 })
  port.answer = s => {
    const req = parseStunBindingRequest(s.data)
    return req === undefined ? undefined : [{ kind: 'stun', data: encodeStunBindingResponse(req.txid, mapped(s.to.port)), from: s.to }]
  }
  const d = await startDaemon({
    stateDir: join(dir, 'state'), socketPath: join(dir, 'warrend.sock'), interfaceName: 'wgtest0', wireguardMode: 'userspace',
    logger: pino({ level: 'silent' }), dataPlane: () => createFakeDataPlane({ sharedPort: port }), transport: ctl.transport,
    endpoints: p => [`192.0.2.10:${p}`], backoff: { minMs: 10, maxMs: 50 },
    nat: { tickMs: 20, intervalMs: 100, timeoutMs: 500, resolve: async () => ['10.0.0.1'] }
  })
  t.teardown(async () => { await d.close(); await ctl.close(); await fs.rm(dir, { recursive: true, force: true }) })
  await d.up({ controller: 'https://controller.test:8443', authKey: `wrnauth-0123456789ab-${'c'.repeat(32)}`, hostname: 'laptop' })
  const sent = (e: string): boolean => ctl.endpointUpdates.some(u => u.includes(e)) || ctl.hellos.some(h => h.endpoints.includes(e))
  await until('the mapped endpoint at the controller', () => sent('198.51.100.7:41641'))
  t.ok(port.sent.every(s => s.to.address === '10.0.0.1'), 'STUN went to the controller URL\'s host (host-less entries)')
  const r = await d.netcheck()
  t.equal(r.endpointIndependent, true)
  t.same(r.mappings, ['198.51.100.7:41641'])

  mapped = () => ({ address: '198.51.100.8', port: 41641 })
  await until('the moved mapping re-sent', () => ctl.endpointUpdates.some(u => u.includes('198.51.100.8:41641') && u.includes('192.0.2.10:41641') && !u.includes('198.51.100.7:41641')))
  t.pass('a moved mapping is re-sent with the local endpoints, the old one dropped')

  mapped = server => ({ address: '198.51.100.8', port: server === 3478 ? 1000 : 2000 })
  await until('symmetric: no mapped endpoint', () => ctl.endpointUpdates.at(-1)?.join() === '192.0.2.10:41641')
  t.equal((await d.netcheck()).endpointIndependent, false, 'netcheck says symmetric')
})

t.test('IPv6 STUN: the IPv6 mapping is sent on its own verdict, even when IPv4 is symmetric', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'warrend-nat-'))
  const ctl = await startFakeController()
  ctl.nat = { stun: [':3478', ':3479'], relays: [] }
  const port = createFakeSharedPort()
  port.answer = s => {
    const req = parseStunBindingRequest(s.data)
    const mapped = s.to.address.includes(':') ? { address: '2001:db8:1::7', port: 41641 } : { address: '198.51.100.7', port: s.to.port === 3478 ? 1000 : 2000 }
    return req === undefined ? undefined : [{ kind: 'stun', data: encodeStunBindingResponse(req.txid, mapped), from: s.to }]
  }
  const d = await startDaemon({
    stateDir: join(dir, 'state'), socketPath: join(dir, 'warrend.sock'), interfaceName: 'wgtest0', wireguardMode: 'userspace',
    logger: pino({ level: 'silent' }), dataPlane: () => createFakeDataPlane({ sharedPort: port }), transport: ctl.transport,
    endpoints: p => [`192.0.2.10:${p}`], backoff: { minMs: 10, maxMs: 50 },
    nat: { tickMs: 20, intervalMs: 100, timeoutMs: 500, resolve: async () => ['10.0.0.1', '2001:db8::1'] }
  })
  t.teardown(async () => { await d.close(); await ctl.close(); await fs.rm(dir, { recursive: true, force: true }) })
  await d.up({ controller: 'https://controller.test:8443', authKey: `wrnauth-0123456789ab-${'c'.repeat(32)}`, hostname: 'laptop' })
  const sent = (e: string): boolean => ctl.endpointUpdates.some(u => u.includes(e)) || ctl.hellos.some(h => h.endpoints.includes(e))
  await until('the IPv6 mapping at the controller', () => sent('[2001:db8:1::7]:41641'))
  t.notOk(sent('198.51.100.7:1000') || sent('198.51.100.7:2000'), 'the symmetric IPv4 mappings are not sent')
  const r = await d.netcheck()
  t.equal(r.endpointIndependent, false)
  t.same(r.ipv6, { udp: true, mappings: ['[2001:db8:1::7]:41641'], endpointIndependent: true })
})

t.test('netcheck says why it cannot run', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'warrend-nat-'))
  const d = await startDaemon({
    stateDir: join(dir, 'state'), socketPath: join(dir, 'warrend.sock'), interfaceName: 'wgtest0', wireguardMode: 'userspace',
    logger: pino({ level: 'silent' }), dataPlane: () => createFakeDataPlane({ sharedPort: createFakeSharedPort() })
  })
  t.teardown(async () => { await d.close(); await fs.rm(dir, { recursive: true, force: true }) })
  await t.rejects(d.netcheck(), { code: 'not_running', message: /warren up/ })
})
