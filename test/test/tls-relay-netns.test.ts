import t from 'tap'
import { netnsSkipReason, waitFor, TLS_RELAY_TOOL_ARGV, type ProcessHandle } from '../src/index.js'
import { createMesh, canPing, flowSamples, FLOW_ARGV, type MeshNode } from '../src/mesh.js'

/**
 * The TLS relay with real processes: a controller and two daemons (wireguard-go) in
 * network namespaces that may send no UDP at all past their own namespace (an nftables
 * drop), so WireGuard cannot reach the peer directly. Each node runs the TLS relay client
 * toward the controller's HTTPS port; WireGuard's endpoint for the peer becomes the
 * client's loopback port, and a ping and a TCP stream then cross the relay. No UDP port
 * opens on any address but loopback, the mesh addresses, and WireGuard's own.
 */
const skip = netnsSkipReason()

/** blockUdp drops every UDP packet the host sends out of its namespace (a test table of its own). */
async function blockUdp (n: MeshNode): Promise<void> {
  await n.host.exec(['nft', '-f', '-'], {
    input: 'table inet wtest_udp_blocked {\n  chain out {\n    type filter hook output priority 0; policy accept;\n    oifname != "lo" oifname != "' + n.iface + '" meta l4proto udp drop\n  }\n}\n'
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
  await mesh.admin('users', 'create', 'alice')
  const key = JSON.parse(await mesh.admin('keys', 'create', '--user', 'alice', '--reusable', '--preapproved', '--json')).key as string
  const a = await mesh.join('a', { authKey: key })
  const b = await mesh.join('b', { authKey: key })
  await waitFor(async () => (await a.wgPeers()).includes(b.wgKey) && (await b.wgPeers()).includes(a.wgKey), { message: 'both see each other in WireGuard', timeoutMs: 60_000 })

  await blockUdp(a)
  await blockUdp(b)
  t.notOk(await canPing(a.host, b.ipv4, 2000), 'with UDP blocked, WireGuard cannot reach the peer directly')

  const tools = new Map<string, ProcessHandle>()
  const relayEndpoint = new Map<string, string>()
  for (const [self, peer] of [[a, b], [b, a]] as const) {
    const tool = self.host.spawn([...TLS_RELAY_TOOL_ARGV, '--state-dir', self.stateDir, '--wg-port', String(await wgPort(self)), '--peer', peer.wgKey])
    tools.set(self.name, tool)
    t.teardown(() => { if (!t.passing()) t.comment(`relay tool ${self.name}:\n${tool.output().slice(-3000)}`) })
    const ep = (await tool.waitForLine(/^endpoint \S+ (127\.0\.0\.1:\d+)$/, 60_000))[1]!
    relayEndpoint.set(self.name, ep)
    await tool.waitForLine(/^relay up$/, 60_000)
    await self.host.exec(['wg', 'set', self.iface, 'peer', peer.wgKey, 'endpoint', ep])
  }

  await waitFor(async () => await canPing(a.host, b.ipv4, 1000), { message: 'a ping through the TLS relay', timeoutMs: 60_000 })
  const pings = await a.host.exec(['ping', '-n', '-c', '20', '-i', '0.05', '-W', '2', b.ipv4], { allowFail: true })
  t.match(pings.stdout, / 0% packet loss/, 'twenty pings through the relay, none lost')

  // A TCP stream both ways (the server echoes), through the relay.
  const server = b.host.spawn([...FLOW_ARGV, 'serve', '7100'])
  await server.waitForLine(/^listening$/, 60_000)
  const sender = a.host.spawn([...FLOW_ARGV, 'send', b.ipv4, '7100'])
  await sender.waitForLine(/^connected$/, 60_000)
  await waitFor(() => flowSamples(sender.output()).some(s => s.bytes >= 256 * 1024), { message: '256 KiB echoed back through the relay', timeoutMs: 120_000 })
  sender.kill()

  // Both clients carried the traffic.
  const stats = (name: string): { sent: number, received: number } => JSON.parse([...tools.get(name)!.output().matchAll(/^stats (.*)$/gm)].at(-1)![1]!) as { sent: number, received: number }
  await waitFor(() => stats('a').sent > 100 && stats('b').received > 100, { message: 'the clients\' counters show the traffic' })

  // No UDP port opened outside loopback, the mesh addresses and WireGuard's port.
  for (const n of [a, b]) {
    const port = await wgPort(n)
    const sockets = await udpSockets(n)
    const relayPort = Number(relayEndpoint.get(n.name)!.split(':')[1])
    t.ok(sockets.some(s => s.port === relayPort && s.address === '127.0.0.1'), `${n.name}: the relay endpoint is on 127.0.0.1`)
    const inside = await insideAddresses(n)
    const outside = sockets.filter(s => !inside.includes(s.address) && s.port !== port)
    t.same(outside, [], `${n.name}: no UDP socket outside loopback, the mesh and WireGuard's port ${port}`)
  }
})
