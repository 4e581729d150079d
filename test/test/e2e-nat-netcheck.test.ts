/**
 * A real controller (STUN on) and real daemons in the NAT lab: `warren netcheck --json`
 * tells each NAT kind apart through the shared WireGuard port, the controller hears the
 * STUN-mapped candidate among the node's endpoints, and `ss` in every node namespace shows
 * no UDP port but WireGuard's and no TCP listener outside loopback and the mesh.
 */
import t from 'tap'
import type { LocalNetcheck, Node } from '@warren/protocol'
import { createMesh, createNatLab, netnsSkipReason, waitFor, type Host, type MeshNode } from '../src/index.js'

const skip = netnsSkipReason()

/**
 * meshOrLoopback says whether a listening address is loopback, the mesh (the IPv4 range, or
 * the node's own mesh IPv6 address: the controller picks the ULA), or MagicDNS's.
 */
function meshOrLoopback (addr: string, meshIpv6: string): boolean {
  const a = addr.replace(/^\[|\]$/g, '').replace(/%.*$/, '')
  return /^127\./.test(a) || a === '::1' || /^100\.(6[4-9]|[7-9]\d|1[01]\d|12[0-7])\./.test(a) || /^fd7a:/i.test(a) || a === meshIpv6
}

/** listeners reads `ss -lnH` (udp or tcp) in a host's namespace as [address, port] pairs. */
async function listeners (host: Host, proto: 'u' | 't'): Promise<Array<[string, number]>> {
  const r = await host.exec(['ss', `-ln${proto}H`])
  return r.stdout.trim().split('\n').filter(Boolean).map(line => {
    const local = line.trim().split(/\s+/)[3]!
    const at = local.lastIndexOf(':')
    return [local.slice(0, at), Number(local.slice(at + 1))]
  })
}

t.test('netcheck and endpoints behind cone, symmetric and UDP-blocked NATs; no open ports', { skip, timeout: 600_000 }, async t => {
  const lab = await createNatLab(t, { sides: [{ name: 'c', nat: 'cone' }, { name: 's', nat: 'symmetric' }, { name: 'u', nat: 'udp-blocked' }] })
  // only TCP 443 leaves the UDP-blocked side, so the controller serves HTTPS there
  const mesh = await createMesh(t, { hosts: [], lab, controllerPort: 443 })
  await mesh.admin('users', 'create', 'alice')
  const key = JSON.parse(await mesh.admin('keys', 'create', '--user', 'alice', '--reusable', '--preapproved', '--json')).key as string
  const nodes: Record<string, MeshNode> = {}
  for (const name of ['c1', 's1', 'u1']) nodes[name] = await mesh.join(name, { authKey: key })

  const netcheck = async (name: string): Promise<LocalNetcheck> =>
    JSON.parse((await mesh.warren(['netcheck', '--json', '--socket', nodes[name]!.socket], { host: lab.node(name) })).stdout) as LocalNetcheck
  const wgPort = async (name: string): Promise<number> => (await netcheck(name)).wgPort

  const cone = await netcheck('c1')
  t.equal(cone.udp, true, 'cone: UDP works')
  t.equal(cone.endpointIndependent, true, 'cone: endpoint-independent')
  t.same(cone.mappings, [`${lab.side('c').publicAddress}:${cone.wgPort}`], 'cone: the NAT keeps the WireGuard port')
  t.ok(cone.servers.length >= 2, 'two or more STUN servers (the controller\'s two ports, and the embedded relay\'s when it runs)')
  t.ok(cone.servers.every(s => s.latencyMs !== undefined), 'a latency to each')

  const text = (await mesh.warren(['netcheck', '--socket', nodes.c1!.socket], { host: lab.node('c1') })).stdout
  t.match(text, /^UDP: +yes$/m, 'the table says UDP works')
  t.match(text, /^NAT: +endpoint-independent/m, 'and names the NAT kind')
  t.match(text, /^IPv6: +not checked \(the map lists no IPv6 STUN server\)$/m, 'and says IPv6 was not checked: the controller is on IPv4 alone')
  t.equal(cone.ipv6, undefined)

  const sym = await netcheck('s1')
  t.equal(sym.udp, true, 'symmetric: UDP works')
  t.equal(sym.endpointIndependent, false, 'symmetric: not endpoint-independent')
  t.equal(sym.mappings.length, sym.servers.length, 'symmetric: one mapping per STUN server')

  const blocked = await netcheck('u1')
  t.equal(blocked.udp, false, 'UDP blocked: no STUN answer')
  t.same(blocked.mappings, [])

  // the controller hears the cone node's STUN-mapped endpoint; the symmetric one's is useless to peers
  const mapped = cone.mappings[0]!
  let listed: Node[] = []
  await waitFor(async () => {
    listed = JSON.parse(await mesh.admin('nodes', 'list', '--json')) as Node[]
    return listed.find(n => n.name === 'c1')?.endpoints.includes(mapped) === true
  }, { timeoutMs: 120_000, intervalMs: 500, message: `c1's STUN-mapped endpoint ${mapped} at the controller` })
  t.pass(`the controller lists ${mapped} among c1's endpoints`)
  t.notOk(listed.find(n => n.name === 's1')?.endpoints.some(e => e.startsWith(lab.side('s').publicAddress)), 'no mapped endpoint for the symmetric node')

  for (const name of ['c1', 's1', 'u1']) {
    const host = lab.node(name)
    const port = await wgPort(name).catch(() => 41641)
    const udp = (await listeners(host, 'u')).filter(([a, p]) => !meshOrLoopback(a, nodes[name]!.ipv6) && p !== port)
    t.same(udp, [], `${name}: no UDP port outside the mesh and loopback but WireGuard's (${port})`)
    const tcp = (await listeners(host, 't')).filter(([a]) => !meshOrLoopback(a, nodes[name]!.ipv6))
    t.same(tcp, [], `${name}: no TCP listener outside the mesh and loopback`)
  }
})
