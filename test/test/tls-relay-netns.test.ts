import t from 'tap'
import { netnsSkipReason, type Host } from '../src/index.js'
import { createMesh, FLOW_ARGV, type MeshNode } from '../src/mesh.js'
import { waitForPath, peerOf, checkPings, checkStream } from '../src/path-checks.js'

/**
 * The TLS relay with real processes: a controller and two daemons (wireguard-go) in
 * network namespaces that may send no UDP past their own namespace (an nftables drop on
 * the underlay, from before they join), so neither a direct path nor the kernel UDP relay
 * can work. The daemons' path selection puts each peer on the TLS relay (the client's
 * loopback port becomes WireGuard's endpoint), and a ping and a TCP stream cross it. No
 * UDP port opens on any address but loopback, the mesh addresses and WireGuard's own.
 */
const skip = netnsSkipReason()

/** blockUdp drops every UDP packet the host sends on its underlay (a test table of its own). */
async function blockUdp (host: Host): Promise<void> {
  const rules = host.interfaces.map(i => `    oifname "${i.name}" meta l4proto udp drop\n`).join('')
  await host.exec(['nft', '-f', '-'], {
    input: `table inet wtest_udp_blocked {\n  chain out {\n    type filter hook output priority 0; policy accept;\n${rules}  }\n}\n`
  })
}

/** insideAddresses are the host's addresses on loopback and on the mesh interface (MagicDNS listens there). */
async function insideAddresses (n: MeshNode): Promise<string[]> {
  const out = (await n.host.exec(['ip', '-o', 'addr', 'show'])).stdout
  return [...out.matchAll(/^\d+:\s+(\S+)\s+inet6?\s+([^/\s]+)/gm)].filter(m => m[1] === 'lo' || m[1] === n.iface).map(m => m[2]!)
}

async function wgPort (n: MeshNode): Promise<number> {
  return Number((await n.host.exec(['wg', 'show', n.iface, 'listen-port'])).stdout.trim())
}

/** udpSockets lists every UDP socket in the host's namespace as local address and port. */
async function udpSockets (n: MeshNode): Promise<Array<{ address: string, port: number }>> {
  const out = (await n.host.exec(['ss', '-uanH'])).stdout
  return out.split('\n').filter(Boolean).map(line => {
    const local = line.trim().split(/\s+/)[3]!
    const at = local.lastIndexOf(':')
    return { address: local.slice(0, at).replace(/^\[|\]$/g, '').replace(/%.*$/, ''), port: Number(local.slice(at + 1)) }
  })
}

t.test('two nodes with UDP blocked talk through the TLS relay', { skip, timeout: 580_000 }, async t => {
  const mesh = await createMesh(t, { hosts: ['a', 'b'] })
  await blockUdp(mesh.topology.host('a'))
  await blockUdp(mesh.topology.host('b'))
  await mesh.admin('users', 'create', 'alice')
  const key = JSON.parse(await mesh.admin('keys', 'create', '--user', 'alice', '--reusable', '--preapproved', '--json')).key as string
  const a = await mesh.join('a', { authKey: key })
  const b = await mesh.join('b', { authKey: key })

  const pathAB = await waitForPath(a, b, 'tls-relay')
  const pathBA = await waitForPath(b, a, 'tls-relay')
  t.match(pathAB, { endpoint: /^127\.0\.0\.1:\d+$/, relay: 'controller' }, 'a reaches b through the TLS relay at a loopback endpoint')
  const wg = await a.host.exec(['wg', 'show', a.iface, 'endpoints'])
  t.match(wg.stdout, `${b.wgKey}\t${pathAB.endpoint}`, 'WireGuard\'s endpoint for the peer is the TLS relay client\'s port')

  await checkPings(t, a, b)

  // A TCP stream both ways (the server echoes), through the relay.
  const server = b.host.spawn([...FLOW_ARGV, 'serve', '7100'])
  await server.waitForLine(/^listening$/, 60_000)
  await checkStream(a, b, 7100)
  t.equal((await peerOf(a, b))?.path?.kind, 'tls-relay', 'still on the TLS relay after the transfer')

  // No UDP port opened outside loopback, the mesh addresses and WireGuard's port.
  for (const [n, path] of [[a, pathAB], [b, pathBA]] as const) {
    const port = await wgPort(n)
    const sockets = await udpSockets(n)
    const relayPort = Number(path.endpoint.split(':')[1])
    t.ok(sockets.some(s => s.port === relayPort && s.address === '127.0.0.1'), `${n.name}: the relay endpoint is on 127.0.0.1`)
    const inside = await insideAddresses(n)
    const outside = sockets.filter(s => !inside.includes(s.address) && s.port !== port)
    t.same(outside, [], `${n.name}: no UDP socket outside loopback, the mesh and WireGuard's port ${port}`)
  }
})
