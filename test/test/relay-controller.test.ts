import t from 'tap'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateMachineKeyPair, generateWireGuardKeyPair, type Netmap } from '@warren/protocol'
import { startController } from '@warren/controller'
import { createMapSession, registerNode, createUdpRelayClient, mapSessionRelayControl } from '@warren/node'
import { createFakeLoopbackSharedPort } from '@warren/node/testing'
import { createFakeRelayFirewall } from '@warren/relay/testing'
import { createControllerTransport } from '@warren/sdk'
import { waitFor } from '../src/index.js'

/**
 * The embedded relay from end to end in one process, on loopback: a controller started
 * with `relay`, two nodes registered over the real API with real map sessions, each with
 * a UdpRelayClient binding through its own (loopback) WireGuard port. Only nftables is a
 * fake here; the namespace tests cover the kernel.
 */
t.test('embedded relay: a request over the map session gets both nodes bound; deleting a node revokes at once', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'warren-relay-ctl-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const fw = createFakeRelayFirewall()
  const ctl = await startController({
    stateDir: join(dir, 'state'),
    listen: '127.0.0.1:0',
    logger: false,
    relay: { publicHost: '127.0.0.1', listenHost: '127.0.0.1', port: 0, firewall: fw, sysctls: false, portRange: { first: 44000, last: 44999 } }
  })
  t.teardown(() => ctl.close())
  t.ok(ctl.relay, 'the relay runs')
  await ctl.state.createUser({ name: 'alice' }, 'test')
  const { key } = await ctl.state.createAuthKey({ user: 'alice', reusable: true, preapproved: true }, 'test')

  const nodes = []
  for (const name of ['a', 'b']) {
    const wg = generateWireGuardKeyPair()
    const machine = generateMachineKeyPair()
    const transport = createControllerTransport({ url: ctl.url, fingerprint: ctl.fingerprint })
    t.teardown(() => transport.close())
    const reg = await registerNode(transport, { machineKey: machine, wireguardPrivateKey: wg.privateKey, hostname: name, authKey: key })
    const session = createMapSession({ openSocket: () => transport.webSocket('v1/machine/map'), machineKey: machine, endpoints: () => [] })
    t.teardown(() => session.close())
    let netmap: Netmap | undefined
    session.on('netmap', (u: { netmap: Netmap }) => { netmap = u.netmap })
    const sharedPort = await createFakeLoopbackSharedPort()
    t.teardown(sharedPort.close)
    const client = createUdpRelayClient({ control: mapSessionRelayControl(session), sharedPort, wgPrivateKey: wg.privateKey })
    t.teardown(client.close)
    nodes.push({ reg, wg, session, sharedPort, client, netmap: () => netmap })
  }
  const [a, b] = nodes as [typeof nodes[0], typeof nodes[0]]
  await waitFor(() => a.netmap()?.peers.length === 1 && b.netmap()?.peers.length === 1, { timeoutMs: 60_000, message: 'both maps' })
  t.same(a.netmap()?.nat?.relays, [{ id: 'embedded', udp: ctl.relay!.endpoint, key: ctl.relay!.publicKey }], 'the map lists the embedded relay')
  t.same(a.netmap()?.nat?.stun, [ctl.relay!.endpoint])

  a.client.request(b.wg.publicKey)
  const ea = await waitFor(() => a.client.endpoint(b.wg.publicKey), { timeoutMs: 60_000, message: 'A bound' })
  const eb = await waitFor(() => b.client.endpoint(a.wg.publicKey), { timeoutMs: 60_000, message: 'B bound (granted because A asked)' })
  t.not(ea, eb)
  const pa = Number(ea.split(':')[1])
  const pb = Number(eb.split(':')[1])
  t.same(fw.forward(pa)?.to, { address: '127.0.0.1', port: b.sharedPort.wgPort }, 'A\'s packets to its relay port go to B\'s WireGuard port')
  t.same(fw.forward(pb)?.to, { address: '127.0.0.1', port: a.sharedPort.wgPort })

  await ctl.state.deleteNode(b.reg.node.id, 'test')
  await waitFor(() => a.client.endpoint(b.wg.publicKey) === undefined, { timeoutMs: 60_000, message: 'the revocation' })
  t.equal(fw.ports().size, 0, 'the relay no longer forwards the pair')
  t.equal(ctl.relay!.allocations().length, 0)
})
