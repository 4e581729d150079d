/**
 * A standalone TLS relay (`warren relay serve --no-udp-relay --tls-listen`) with real
 * processes in network namespaces: the controller runs with both embedded relays off, and
 * two nodes sit behind NATs that let only TCP 443 out, so the only path between them is
 * the relay host's TLS relay, which the controller lists in their maps (with the pin of
 * the relay's self-signed certificate) and tells who may use it over the relay link. The
 * relay runs as nobody (with only the capability to bind port 443) and touches no
 * nftables. The policy holds on that path, and deleting a node cuts its relay connection
 * at once.
 */
import t from 'tap'
import { writeFileSync, mkdtempSync, chownSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createMesh, createNatLab, netnsSkipReason, waitFor, WARREN_ARGV, BACKBONE } from '../src/index.js'
import { joinPair, checkRelayed, checkPings, checkPolicy, peerOf } from '../src/path-checks.js'

const skip = netnsSkipReason()

t.test('UDP blocked on both sides, no relay in the controller: the pair meets on a standalone TLS relay', { skip, timeout: 580_000 }, async t => {
  const lab = await createNatLab(t, { sides: [{ name: 'x', nat: 'udp-blocked' }, { name: 'y', nat: 'udp-blocked' }] })
  const mesh = await createMesh(t, { hosts: [], lab, controllerPort: 443, controllerArgs: ['--no-relay', '--no-tls-relay'] })
  await mesh.controller.waitForLine(/TLS relay: off/, 30_000)

  // The relay host is on the backbone beside the controller, reached through the core.
  const host = await lab.topology.addHost('relay')
  await host.exec(['ip', 'route', 'add', 'default', 'via', lab.core.interfaces.find(i => i.network === BACKBONE)!.address])
  const relayKey = JSON.parse(await mesh.admin('apikeys', 'create', '--scope', 'relay', '--description', 'edge-1', '--json')).key as string
  // The relay's files belong to nobody, who runs it: a TLS-only relay needs no root.
  const relayDir = mkdtempSync(join(tmpdir(), 'warren-relay-'))
  t.teardown(() => { rmSync(relayDir, { recursive: true, force: true }) })
  const keyFile = join(relayDir, 'relay-link.key')
  writeFileSync(keyFile, `${relayKey}\n`, { mode: 0o600 })
  for (const f of [relayDir, keyFile]) chownSync(f, 65534, 65534)
  const asNobody = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=+net_bind_service', '--ambient-caps=+net_bind_service']
  const relay = host.spawn([...asNobody, ...WARREN_ARGV, 'relay', 'serve', '--controller', mesh.url, '--key-file', keyFile, '--state-dir', join(relayDir, 'state'),
    '--public-host', host.address, '--id', 'edge-1', '--no-udp-relay', '--tls-listen', `${host.address}:443`])
  t.teardown(() => { if (!t.passing()) t.comment(`relay output:\n${relay.output().slice(-4000)}`) })
  await relay.waitForLine(/TLS relay on https:\/\/\S+ \(certificate fingerprint/, 60_000)
  await relay.waitForLine(/controller accepted this relay/, 60_000)
  t.equal((await host.exec(['nft', 'list', 'tables'])).stdout.trim(), '', 'the TLS-only relay made no nftables table')

  const [a, b] = await joinPair(mesh, ['x1', 'y1'])
  await checkRelayed(t, a, b, 'tls-relay', '127.0.0.1', 'edge-1')
  await checkRelayed(t, b, a, 'tls-relay', '127.0.0.1', 'edge-1')
  await checkPings(t, a, b)
  await checkPolicy(t, a, b)
  t.equal((await peerOf(a, b))?.path?.relay, 'edge-1', 'still on the standalone relay')

  const idB = (await b.status()).self!.id
  await mesh.admin('nodes', 'delete', 'y1')
  const [cut] = await relay.waitForLine(new RegExp(`"node":"${idB}","code":"node_deleted"`), 60_000)
  t.ok(cut, 'the relay cut the deleted node\'s connection')
  await waitFor(async () => await peerOf(a, b) === undefined, { timeoutMs: 60_000, message: 'b gone from a\'s peers' })
})
