/**
 * The NAT lab's kinds behave as named, shown with plain UDP between sockets in its
 * namespaces: a reflector on the controller host answers with the source it saw, so a
 * node learns its mapping toward two destinations.
 */
import t from 'tap'
import { createNatLab, natRules, NAT_TOOL_ARGV, netnsSkipReason, type Host, type NatLab } from '../src/index.js'

const skip = netnsSkipReason()
const PORT = 41641
const R1 = 3478
const R2 = 3479

/** mappings probes both reflector ports from `node`'s PORT and returns what each saw. */
async function mappings (lab: NatLab, node: Host): Promise<string[]> {
  const to = [R1, R2].map(p => `${lab.controller.address}:${p}`).join(',')
  const r = await node.exec([...NAT_TOOL_ARGV, 'probe', String(PORT), to, '3000'])
  return r.stdout.trim().split('\n')
}

async function reflector (lab: NatLab): Promise<void> {
  await lab.controller.spawn([...NAT_TOOL_ARGV, 'reflect', `${R1},${R2}`]).waitForLine(/^ready$/, 30_000)
}

/** unsolicited sends one datagram from the controller host to ADDR:PORT and says whether `to` got it. */
async function unsolicited (lab: NatLab, to: Host, address: string): Promise<boolean> {
  const listener = to.spawn([...NAT_TOOL_ARGV, 'listen', String(PORT)])
  await listener.waitForLine(/^ready$/, 30_000)
  // more than one datagram, so one lost to ARP on a cold network cannot fail the test
  for (let i = 0; i < 3; i++) await lab.controller.exec([...NAT_TOOL_ARGV, 'send', '0', `${address}:${PORT}`])
  const got = await listener.waitForLine(/^from /, 2000).then(() => true, () => false)
  await listener.kill()
  return got
}

t.test('natRules puts a newline after masquerade fully-random (nft 1.0.6 refuses it before `}`)', async t => {
  t.match(natRules('symmetric'), /masquerade fully-random\n/)
  t.throws(() => natRules('full-cone'), /needs a node/)
})

t.test('none, cone and symmetric sides map as named', { skip, timeout: 240_000 }, async t => {
  const lab = await createNatLab(t, { sides: [{ name: 'p', nat: 'none' }, { name: 'c', nat: 'cone' }, { name: 's', nat: 'symmetric' }] })
  await reflector(lab)
  const p = lab.side('p'); const c = lab.side('c'); const s = lab.side('s')

  const open = await mappings(lab, p.nodes[0]!)
  t.same(open, [`${p.nodes[0]!.address}:${PORT}`, `${p.nodes[0]!.address}:${PORT}`], 'routed: the node is seen with its own address')

  const cone = await mappings(lab, c.nodes[0]!)
  t.same(cone, [`${c.publicAddress}:${PORT}`, `${c.publicAddress}:${PORT}`], 'cone: one mapping (the port kept) for both destinations')

  const sym = await mappings(lab, s.nodes[0]!)
  t.equal(sym.length, 2)
  t.ok(sym.every(m => m.startsWith(`${s.publicAddress}:`)), 'symmetric: the NAT\'s address')
  t.not(sym[0], sym[1], 'symmetric: each destination its own mapped port')

  t.notOk(await unsolicited(lab, c.nodes[0]!, c.publicAddress), 'cone: an unsolicited datagram to the mapped port does not arrive')
  t.ok(await unsolicited(lab, p.nodes[0]!, p.nodes[0]!.address), 'routed: an unsolicited datagram arrives')
})

t.test('full cone forwards the mapped port; two nodes share one NAT; a router hop lies between NATs', { skip, timeout: 240_000 }, async t => {
  const lab = await createNatLab(t, { sides: [{ name: 'f', nat: 'full-cone', nodes: 2 }, { name: 'c', nat: 'cone' }] })
  await reflector(lab)
  const f = lab.side('f')
  t.equal(f.nodes.length, 2)
  t.same(await mappings(lab, f.nodes[0]!), [`${f.publicAddress}:${PORT}`, `${f.publicAddress}:${PORT}`], 'full cone keeps the port')
  t.ok(await unsolicited(lab, f.nodes[0]!, f.publicAddress), 'full cone: an unsolicited datagram to the mapped port arrives')
  const second = await mappings(lab, f.nodes[1]!)
  t.ok(second.every(m => m.startsWith(`${f.publicAddress}:`)), 'the second node is behind the same NAT address')
  const lan = await f.nodes[1]!.exec(['ping', '-n', '-c', '1', '-W', '2', f.nodes[0]!.address], { allowFail: true })
  t.equal(lan.exitCode, 0, 'nodes behind one NAT reach each other on their LAN')
  // From a node to the other NAT's public address: node -> NAT -> core -> NAT, so TTL 2
  // dies at the core (time exceeded from the core's address).
  const trace = await f.nodes[0]!.exec(['ping', '-n', '-c', '1', '-W', '2', '-t', '2', lab.side('c').publicAddress], { allowFail: true })
  t.match(trace.stdout, /Time to live exceeded/, 'a TTL-2 packet dies between the two NATs')
})

t.test('udp-blocked lets no UDP out but passes TCP 443', { skip, timeout: 240_000 }, async t => {
  const lab = await createNatLab(t, { sides: [{ name: 'u', nat: 'udp-blocked' }] })
  await reflector(lab)
  await lab.controller.spawn([...NAT_TOOL_ARGV, 'tcp-listen', '443']).waitForLine(/^ready$/, 30_000)
  await lab.controller.spawn([...NAT_TOOL_ARGV, 'tcp-listen', '8443']).waitForLine(/^ready$/, 30_000)
  const u = lab.side('u').nodes[0]!
  t.same(await mappings(lab, u), ['none', 'none'], 'no UDP answer')
  const tcp = async (port: number): Promise<string> => (await u.exec([...NAT_TOOL_ARGV, 'tcp-probe', lab.controller.address, String(port), '3000'])).stdout.trim()
  t.equal(await tcp(443), 'open', 'TCP 443 passes')
  t.equal(await tcp(8443), 'closed', 'TCP to another port does not')
})
