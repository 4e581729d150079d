/**
 * Standalone TLS relays (`warren relay serve --no-udp-relay --tls-listen`) with real
 * processes in network namespaces: the controller runs with both embedded relays off, and
 * two nodes sit behind NATs that let only TCP 443 out, so the only paths between them are
 * the relay hosts' TLS relays, which the controller lists in their maps (with the pins of
 * the relays' self-signed certificates) and tells who may use them over the relay link.
 * Each relay runs as nobody (with only the capability to bind port 443) and touches no
 * nftables. Both nodes pick the same relay for their pair; when it stops, both move to
 * the other. The policy holds on that path, and deleting a node cuts its relay
 * connection at once.
 */
import t, { type Test } from 'tap'
import { writeFileSync, mkdtempSync, chownSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createMesh, createNatLab, netnsSkipReason, waitFor, WARREN_ARGV, BACKBONE, type Mesh, type NatLab } from '../src/index.js'
import { joinPair, checkRelayed, checkPings, checkSettledPings, checkPolicy, peerOf, waitForPath } from '../src/path-checks.js'

const skip = netnsSkipReason()

/** AS_NOBODY runs a command as nobody, with only the capability to bind port 443. */
const AS_NOBODY = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=+net_bind_service', '--ambient-caps=+net_bind_service']

/**
 * startRelay runs `warren relay serve --no-udp-relay` as nobody on a host of its own on the
 * backbone beside the controller (reached through the core), with its own relay key.
 */
async function startRelay (t: Test, lab: NatLab, mesh: Mesh, hostName: string, id: string) {
  const host = await lab.topology.addHost(hostName)
  await host.exec(['ip', 'route', 'add', 'default', 'via', lab.core.interfaces.find(i => i.network === BACKBONE)!.address])
  const relayKey = JSON.parse(await mesh.admin('apikeys', 'create', '--scope', 'relay', '--description', id, '--json')).key as string
  // The relay's files belong to nobody, who runs it: a TLS-only relay needs no root.
  const relayDir = mkdtempSync(join(tmpdir(), 'warren-relay-'))
  t.teardown(() => { rmSync(relayDir, { recursive: true, force: true }) })
  const keyFile = join(relayDir, 'relay-link.key')
  writeFileSync(keyFile, `${relayKey}\n`, { mode: 0o600 })
  for (const f of [relayDir, keyFile]) chownSync(f, 65534, 65534)
  const relay = host.spawn([...AS_NOBODY, ...WARREN_ARGV, 'relay', 'serve', '--controller', mesh.url, '--key-file', keyFile, '--state-dir', join(relayDir, 'state'),
    '--public-host', host.address, '--id', id, '--no-udp-relay', '--tls-listen', `${host.address}:443`])
  t.teardown(() => { if (!t.passing()) t.comment(`${id} output:\n${relay.output().slice(-4000)}`) })
  await relay.waitForLine(/TLS relay on https:\/\/\S+ \(certificate fingerprint/, 60_000)
  await relay.waitForLine(/controller accepted this relay/, 60_000)
  t.equal((await host.exec(['nft', 'list', 'tables'])).stdout.trim(), '', `${id}, a TLS-only relay, made no nftables table`)
  return relay
}

t.test('UDP blocked on both sides, no relay in the controller: the pair meets on one of two standalone TLS relays, and moves when it goes', { skip, timeout: 580_000 }, async t => {
  const lab = await createNatLab(t, { sides: [{ name: 'x', nat: 'udp-blocked' }, { name: 'y', nat: 'udp-blocked' }] })
  const mesh = await createMesh(t, { hosts: [], lab, controllerPort: 443, controllerArgs: ['--no-relay', '--no-tls-relay'] })
  await mesh.controller.waitForLine(/TLS relay: off/, 30_000)
  const relays = new Map([['edge-1', await startRelay(t, lab, mesh, 'relay1', 'edge-1')], ['edge-2', await startRelay(t, lab, mesh, 'relay2', 'edge-2')]])

  const [a, b] = await joinPair(mesh, ['x1', 'y1'])
  const on = (await waitForPath(a, b, 'tls-relay')).relay!
  t.ok(relays.has(on), `the pair uses one of the relays (${on})`)
  await checkRelayed(t, a, b, 'tls-relay', '127.0.0.1', on)
  await checkRelayed(t, b, a, 'tls-relay', '127.0.0.1', on)
  await checkPings(t, a, b)
  await checkPolicy(t, a, b)

  // The pair's relay goes: it leaves the maps, and both nodes move to the other.
  const other = on === 'edge-1' ? 'edge-2' : 'edge-1'
  await relays.get(on)!.kill()
  await checkRelayed(t, a, b, 'tls-relay', '127.0.0.1', other)
  await checkRelayed(t, b, a, 'tls-relay', '127.0.0.1', other)
  await checkSettledPings(t, a, b, `on ${other}`)

  const idB = (await b.status()).self!.id
  await mesh.admin('nodes', 'delete', 'y1')
  const [cut] = await relays.get(other)!.waitForLine(new RegExp(`"node":"${idB}","code":"node_deleted"`), 60_000)
  t.ok(cut, 'the relay cut the deleted node\'s connection')
  await waitFor(async () => await peerOf(a, b) === undefined, { timeoutMs: 60_000, message: 'b gone from a\'s peers' })
})
