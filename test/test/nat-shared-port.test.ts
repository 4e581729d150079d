/**
 * The node's real SharedPort (socket on the mesh address plus the firewall's shared-port
 * rules, real nft) in the NAT lab: WireGuard-shaped packets still reach the socket on the
 * WireGuard port, STUN answers and control packets reach the daemon's socket, what the
 * daemon sends is seen on the far side as coming from the WireGuard port (through a NAT:
 * from WireGuard's own mapping), a TTL-limited send dies between the NATs, and `ss`
 * shows no UDP socket but the WireGuard port's outside the mesh address.
 */
import t, { type Test } from 'tap'
import { encodeControl, ControlKind, parseStunBindingResponse } from '@warren/protocol'
import { createNatLab, NAT_TOOL_ARGV, netnsSkipReason, type Host, type NatLab } from '../src/index.js'
import { SHARED_PORT_TOOL_ARGV } from '../src/shared-port-tool.js'

const skip = netnsSkipReason()
const WG = 41641
const ANSWER = 5000
const MESH = '100.64.0.5'
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

/** meshInterface gives the node a tun device with a mesh address, as WireGuard's would be. */
async function meshInterface (node: Host): Promise<string> {
  const ifname = node.interfaceName()
  await node.exec(['ip', 'tuntap', 'add', 'mode', 'tun', 'name', ifname])
  await node.exec(['ip', 'addr', 'add', `${MESH}/32`, 'dev', ifname])
  await node.exec(['ip', 'link', 'set', ifname, 'up'])
  return ifname
}

async function run (t: Test, lab: NatLab, node: Host, seenAs: string): Promise<void> {
  const ifname = await meshInterface(node)
  const answer = lab.controller.spawn([...NAT_TOOL_ARGV, 'answer', String(ANSWER)])
  await answer.waitForLine(/^ready$/, 30_000)
  // a plain socket on the WireGuard port stands in for WireGuard
  const wg = node.spawn([...NAT_TOOL_ARGV, 'listen', String(WG)])
  await wg.waitForLine(/^ready$/, 30_000)
  const target = `${lab.controller.address}:${ANSWER}`
  const short = hex(encodeControl(ControlKind.DiscoPing, Buffer.from('ttl2')))
  const full = hex(encodeControl(ControlKind.DiscoPing, Buffer.from('full')))
  const tool = node.spawn([...SHARED_PORT_TOOL_ARGV, String(WG), MESH, ifname, 'wsptest', `${target}:2:${short}`, `${target}:0:${full}`])
  const ready = await tool.waitForLine(/^ready (\d+) (.*)$/, 30_000)
  const controlPort = Number(ready[1])
  t.same(JSON.parse(ready[2]!), { eth0: node.address }, 'the egress map holds the LAN interface\'s address')

  const seen = await answer.waitForLine(/^from (\S+) (\S+)$/, 10_000)
  t.equal(seen[1], `${seenAs}:${WG}`, `the far side sees the daemon's packet from ${seenAs}, the WireGuard port`)
  t.equal(seen[2], full, 'and the TTL-2 probe sent before it died on the way (it never arrived)')

  const stun = await tool.waitForLine(/^got stun (\S+) (\S+)$/, 10_000)
  t.equal(stun[2], target, 'the STUN answer reached the daemon socket')
  t.same(parseStunBindingResponse(Buffer.from(stun[1]!, 'hex'))?.mapped, { address: seenAs, port: WG }, 'and names the WireGuard port\'s mapping')
  const control = await tool.waitForLine(/^got control (\S+) (\S+)$/, 10_000)
  t.equal(control[1], hex(encodeControl(ControlKind.DiscoPong, Buffer.from('pong'))), 'the control packet reached the daemon socket')
  const toWg = await wg.waitForLine(/^from (\S+) (\S+)$/, 10_000)
  t.equal(toWg[2], '01000000776972656775617264', 'the WireGuard-shaped packet reached the WireGuard port\'s socket')
  t.notMatch(wg.output(), /from \S+ (57524e01|0101)/, 'and nothing meant for the daemon did')
  t.notMatch(tool.output(), /got \S+ 01000000/, 'the daemon got no WireGuard packet')

  const ss = await node.exec(['ss', '-lnuH'])
  const locals = ss.stdout.trim().split('\n').map(l => l.trim().split(/\s+/)[3]).sort()
  t.same(locals, [`${MESH}:${controlPort}`, `0.0.0.0:${WG}`].sort(), 'ss: the WireGuard port and the control socket on the mesh address, nothing else')
  await tool.kill()
}

t.test('shared port on a routed node (no NAT)', { skip, timeout: 240_000 }, async t => {
  const lab = await createNatLab(t, { sides: [{ name: 'p', nat: 'none' }] })
  const node = lab.side('p').nodes[0]!
  await run(t, lab, node, node.address)
})

t.test('shared port behind a cone NAT: the daemon\'s packets take the WireGuard port\'s mapping', { skip, timeout: 240_000 }, async t => {
  const lab = await createNatLab(t, { sides: [{ name: 'c', nat: 'cone' }] })
  await run(t, lab, lab.side('c').nodes[0]!, lab.side('c').publicAddress)
})
