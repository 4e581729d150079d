import t, { type Test } from 'tap'
import { mkdtemp, rm, writeFile, chmod } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateMachineKeyPair, generateWireGuardKeyPair, RELAY_LINK_PATH, type Netmap } from '@warren/protocol'
import { startController, type RunningController } from '@warren/controller'
import { createMapSession, registerNode, createUdpRelayClient, mapSessionRelayControl } from '@warren/node'
import { createFakeLoopbackSharedPort } from '@warren/node/testing'
import { createFakeRelayFirewall } from '@warren/relay/testing'
import { startUdpRelay, loadOrCreateRelayKey, runControllerLink, readLinkKeyFile, webSocketLinkSocket, createRelayMembers, startTlsRelayServer, loadOrCreateTls } from '@warren/relay'
import { createControllerTransport } from '@warren/sdk'
import { waitFor } from '../src/index.js'

/**
 * The kernel relay from end to end in one process, on loopback: a controller (with the
 * embedded relay, or a standalone relay linked to it, also with a TLS relay), two nodes registered over the real
 * API with real map sessions, each with a UdpRelayClient binding through its own
 * (loopback) WireGuard port. Only nftables is a fake here; the namespace tests cover the
 * kernel.
 */

/** joinTwo registers nodes a and b over the real API, each with a map session and a UdpRelayClient on its own loopback WireGuard port. */
async function joinTwo (t: Test, ctl: RunningController) {
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
  return nodes as [typeof nodes[0], typeof nodes[0]]
}

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
  const [a, b] = await joinTwo(t, ctl)
  await waitFor(() => a.netmap()?.peers.length === 1 && b.netmap()?.peers.length === 1, { timeoutMs: 60_000, message: 'both maps' })
  t.same(a.netmap()?.nat?.relays, [{ id: 'controller', udp: ctl.relay!.endpoint, key: ctl.relay!.publicKey, tls: ctl.url }], 'the map lists the embedded relays: kernel UDP and TLS')
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

t.test('standalone relay: it links with a relay key from a 0600 file, joins the maps, relays granted pairs, and a dropped link revokes them all', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'warren-relay-ctl-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const ctl = await startController({ stateDir: join(dir, 'state'), listen: '127.0.0.1:0', logger: false })
  t.teardown(() => ctl.close())
  t.equal(ctl.relay, undefined, 'no embedded relay')
  const fw = createFakeRelayFirewall()
  const relay = await startUdpRelay({ key: await loadOrCreateRelayKey(join(dir, 'relay.key')), port: 0, listenHost: '127.0.0.1', publicHost: '127.0.0.1', firewall: fw, sysctls: false, portRange: { first: 43000, last: 43999 } })
  t.teardown(() => relay.close())
  const { key: relayKey, apiKey: relayKeyInfo } = await ctl.state.createApiKey({ scope: 'relay', description: 'relay edge-1' }, 'test')
  const { key: adminKey } = await ctl.state.createApiKey({}, 'test')
  const keyFile = join(dir, 'link.key')
  await writeFile(keyFile, `${relayKey}\n`, { mode: 0o644 })
  await chmod(keyFile, 0o644)
  await t.rejects(readLinkKeyFile(keyFile), { code: 'bad_key_file', message: `relay key file ${keyFile} has mode 0644, so others on this host may read it; run 'chmod 600 ${keyFile}'` }, 'a key file others may read is refused')
  await chmod(keyFile, 0o600)
  const linkKey = await readLinkKeyFile(keyFile)
  t.equal(linkKey, relayKey, 'the key from the 0600 file')

  const transport = createControllerTransport({ url: ctl.url, fingerprint: ctl.fingerprint })
  t.teardown(() => transport.close())
  const open = (bearer: string) => () => webSocketLinkSocket(transport.webSocket(RELAY_LINK_PATH.slice(1), { headers: { authorization: `Bearer ${bearer}` } }))
  const impostor = runControllerLink({ relay, id: 'impostor', openSocket: open('wrnapi-not-a-key'), retryMs: 60_000 })
  t.teardown(() => impostor.close())
  const adminRefusals: string[] = []
  const admin = runControllerLink({
    relay,
    id: 'admin-keyed',
    openSocket: open(adminKey),
    retryMs: 60_000,
    log: { info: () => {}, debug: () => {}, warn: (o: { why?: string }) => { if (o.why !== undefined) adminRefusals.push(o.why) } }
  })
  await waitFor(() => adminRefusals.length > 0, { timeoutMs: 60_000, message: 'the admin-keyed link refused' })
  t.match(adminRefusals[0], /HTTP 403, forbidden_scope\): API key \w+ is an admin key, and a relay link takes only a relay key .*'warren admin apikeys create --scope relay'/, 'an admin key cannot link a relay, and the relay is told how to make a relay key')
  t.notOk(admin.connected())
  admin.close()

  const [a, b] = await joinTwo(t, ctl)
  const link = runControllerLink({ relay, id: 'edge-1', openSocket: open(linkKey) })
  t.teardown(() => link.close())
  await waitFor(() => link.connected(), { timeoutMs: 60_000, message: 'the relay link' })
  t.notOk(impostor.connected(), 'a relay without a valid API key is refused')
  const linked = await waitFor(() => ctl.state.listAudit().find(e => e.action === 'relay.link'), { timeoutMs: 60_000, message: 'the audit entry' })
  t.match(linked, { actor: `apikey:${relayKeyInfo.id}`, target: 'edge-1', detail: { udp: relay.endpoint } }, 'the audit log names the relay key that linked')
  await waitFor(() => a.netmap()?.nat?.relays.some(r => r.id === 'edge-1'), { timeoutMs: 60_000, message: 'the relay in the map' })
  t.same(a.netmap()?.nat, { stun: [relay.endpoint], relays: [{ id: 'edge-1', udp: relay.endpoint, key: relay.publicKey }] })

  a.client.request(b.wg.publicKey)
  await waitFor(() => a.client.endpoint(b.wg.publicKey) !== undefined && b.client.endpoint(a.wg.publicKey) !== undefined, { timeoutMs: 60_000, message: 'both bound on the standalone relay' })
  t.equal(a.client.relayId(b.wg.publicKey), 'edge-1')
  t.equal(relay.allocations().length, 1)
  t.equal(fw.forward(Number(a.client.endpoint(b.wg.publicKey)!.split(':')[1]))?.to.port, b.sharedPort.wgPort)

  link.close()
  await waitFor(() => relay.allocations().length === 0, { timeoutMs: 60_000, message: 'the relay releasing everything' })
  await waitFor(() => a.client.endpoint(b.wg.publicKey) === undefined && b.client.endpoint(a.wg.publicKey) === undefined, { timeoutMs: 60_000, message: 'revocations' })
  await waitFor(() => a.netmap()?.nat?.relays.length === 0, { timeoutMs: 60_000, message: 'the relay gone from the map' })
  t.equal(fw.ports().size, 0)
})

t.test('standalone dual-stack relay: the link announces both endpoints, maps list both, and a pair of IPv4 nodes binds over IPv4', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'warren-relay-ctl-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const ctl = await startController({ stateDir: join(dir, 'state'), listen: '127.0.0.1:0', logger: false })
  t.teardown(() => ctl.close())
  const fw = createFakeRelayFirewall()
  const relay = await startUdpRelay({ key: await loadOrCreateRelayKey(join(dir, 'relay.key')), port: 0, listenHost: '::', publicHost: '127.0.0.1', publicHost6: '::1', firewall: fw, sysctls: false, portRange: { first: 45000, last: 45999 } })
  t.teardown(() => relay.close())
  const { key: linkKey } = await ctl.state.createApiKey({ scope: 'relay', description: 'relay dual' }, 'test')
  const transport = createControllerTransport({ url: ctl.url, fingerprint: ctl.fingerprint })
  t.teardown(() => transport.close())
  const open = () => webSocketLinkSocket(transport.webSocket(RELAY_LINK_PATH.slice(1), { headers: { authorization: `Bearer ${linkKey}` } }))

  const refusals: string[] = []
  const bad = runControllerLink({
    relay: { ...relay, endpoint6: `127.0.0.2:${relay.port}` },
    id: 'bad-v6',
    openSocket: open,
    retryMs: 60_000,
    log: { info: () => {}, debug: () => {}, warn: (o: { message?: string }) => { if (o.message !== undefined) refusals.push(o.message) } }
  })
  await waitFor(() => refusals.length > 0, { timeoutMs: 60_000, message: 'the bad hello refused' })
  bad.close()
  t.match(refusals[0], /udp6 '127\.0\.0\.2:\d+' must be an IPv6 address and port beside udp; check the relay's --public-host6/, 'an IPv6 endpoint that is IPv4 is refused, saying which flag to fix')

  const [a, b] = await joinTwo(t, ctl)
  const link = runControllerLink({ relay, id: 'dual', openSocket: open })
  t.teardown(() => link.close())
  await waitFor(() => a.netmap()?.nat?.relays.some(r => r.id === 'dual'), { timeoutMs: 60_000, message: 'the relay in the map' })
  t.same(a.netmap()?.nat?.relays, [{ id: 'dual', udp: `127.0.0.1:${relay.port}`, udp6: `[::1]:${relay.port}`, key: relay.publicKey }], 'the map lists both endpoints')
  a.client.request(b.wg.publicKey)
  await waitFor(() => a.client.endpoint(b.wg.publicKey) !== undefined && b.client.endpoint(a.wg.publicKey) !== undefined, { timeoutMs: 60_000, message: 'both bound on the dual-stack relay' })
  t.match(a.client.endpoint(b.wg.publicKey), /^127\.0\.0\.1:45\d{3}$/, 'nodes with IPv4 get the IPv4 endpoint')
  t.same(fw.forward(Number(a.client.endpoint(b.wg.publicKey)!.split(':')[1]))?.to, { address: '127.0.0.1', port: b.sharedPort.wgPort }, 'and forward over IPv4')
})

t.test('standalone TLS relay: the link announces it, every map lists it with its pin, and the relay holds the members the controller pushes', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'warren-relay-ctl-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const ctl = await startController({ stateDir: join(dir, 'state'), listen: '127.0.0.1:0', logger: false, tlsRelay: false })
  t.teardown(() => ctl.close())
  t.equal(ctl.tlsRelay, undefined, 'no embedded TLS relay')
  const relay = await startUdpRelay({ key: await loadOrCreateRelayKey(join(dir, 'relay.key')), port: 0, listenHost: '127.0.0.1', publicHost: '127.0.0.1', firewall: createFakeRelayFirewall(), sysctls: false, portRange: { first: 42000, last: 42999 } })
  t.teardown(() => relay.close())
  const members = createRelayMembers()
  const cert = await loadOrCreateTls({ stateDir: dir, commonName: 'warren-relay' })
  const tls = await startTlsRelayServer({ host: '127.0.0.1', port: 0, tls: cert, members })
  t.teardown(() => tls.close())
  const { key: relayKey } = await ctl.state.createApiKey({ scope: 'relay', description: 'relay edge-1' }, 'test')
  const [a, b] = await joinTwo(t, ctl)
  const transport = createControllerTransport({ url: ctl.url, fingerprint: ctl.fingerprint })
  t.teardown(() => transport.close())
  const link = runControllerLink({
    relay,
    id: 'edge-1',
    openSocket: () => webSocketLinkSocket(transport.webSocket(RELAY_LINK_PATH.slice(1), { headers: { authorization: `Bearer ${relayKey}` } })),
    tls: { url: tls.url, fingerprint: tls.fingerprint, relay: tls.relay, members }
  })
  t.teardown(() => link.close())

  await waitFor(() => a.netmap()?.nat?.relays.some(r => r.id === 'edge-1'), { timeoutMs: 60_000, message: 'the relay in the map' })
  t.same(a.netmap()?.nat?.relays, [{ id: 'edge-1', udp: relay.endpoint, key: relay.publicKey, tls: tls.url, tlsFingerprint: cert.fingerprint }], 'the map lists the TLS relay\'s URL and the pin of its certificate')
  t.match(tls.url, /^https:\/\/127\.0\.0\.1:\d+$/)
  const [ida, idb] = [a.reg.node.id, b.reg.node.id]
  t.same(members.byMachineKey(a.reg.node.machineKey)?.id, ida, 'the relay knows a by its machine key')
  t.same([...members.peersOf(ida)], [idb], 'and that a may talk to b')
  t.same([...members.peersOf(idb)], [ida])

  // A policy that lets nobody talk reaches the relay at once.
  await ctl.policy.set(JSON.stringify({ acls: [] }), 'test')
  await waitFor(() => members.peersOf(ida).size === 0 && members.peersOf(idb).size === 0, { timeoutMs: 60_000, message: 'the new peers on the relay' })
  t.ok(members.isMember(ida), 'a is still a member, with no one to talk to')

  await ctl.state.deleteNode(idb, 'test')
  await waitFor(() => !members.isMember(idb), { timeoutMs: 60_000, message: 'b gone from the relay' })
  t.equal(members.byMachineKey(b.reg.node.machineKey), undefined, 'b can no longer get in')

  link.close()
  await waitFor(() => members.size() === 0, { timeoutMs: 60_000, message: 'the relay forgetting its members' })
  await waitFor(() => a.netmap()?.nat?.relays.length === 0, { timeoutMs: 60_000, message: 'the relay gone from the map' })
})
