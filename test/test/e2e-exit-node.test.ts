import t from 'tap'
import { createSubnetLab, hostNetworkState, netnsSkipReason, waitFor, waitForPath, type Host } from '../src/index.js'
import { canConnect, FLOW_ARGV } from '../src/mesh.js'

/**
 * An exit node end to end, in network namespaces. The subnet lab's router is the exit
 * node; its LAN is its uplink, where an "internet" host answers on an address outside the
 * mesh and LAN ranges (198.18.0.0/15, benchmarking space) that only the exit node routes
 * to. alice's client, on the backbone only, reaches it through the exit node when the
 * policy grants autogroup:internet, not when it does not; leaving the exit node stops it;
 * `down` puts back the client's routes, rules and resolver and the exit node's forwarding
 * settings exactly.
 */
const skip = netnsSkipReason()

function policy (internet: boolean): string {
  return `{
  "groups": { "group:eng": ["alice@"] },
  "tagOwners": { "tag:router": ["alice@"] },
  "acls": [
    { "action": "accept", "src": ["group:eng"], "dst": ["tag:router:22"] },
${internet ? '    { "action": "accept", "src": ["group:eng"], "dst": ["autogroup:internet:8080"], "proto": "tcp" },\n' : ''}  ],
  "autoApprovers": { "exitNode": ["tag:router"] },
}
`
}

/** forwardingSettings are the host's forwarding sysctls, but the mesh interface's (which `down` removes with the interface) */
async function forwardingSettings (h: Host, meshInterface: string): Promise<string> {
  return (await h.exec(['sysctl', '-a', '--pattern', 'forwarding'])).stdout.split('\n').filter(l => !l.includes(`.${meshInterface}.`)).join('\n')
}

t.test('a client uses an exit node for the internet when the policy allows it', { skip, timeout: 580_000 }, async t => {
  const { mesh, router: exitNode, client, lanHost: internet, setPolicy } = await createSubnetLab(t, () => policy(true))
  // the "internet": an address outside every mesh and LAN range, routed only by the exit node
  const publicAddress = `198.18.${Math.floor(Math.random() * 250) + 1}.1`
  await internet.exec(['ip', 'link', 'set', 'lo', 'up'])
  await internet.exec(['ip', 'addr', 'add', `${publicAddress}/32`, 'dev', 'lo'])
  await exitNode.host.exec(['ip', 'route', 'add', 'default', 'via', internet.address])
  const server = internet.spawn([...FLOW_ARGV, 'serve', '8080,9090'])
  await server.waitForLine(/^listening$/, 60_000)
  const reach = async (port: number, timeoutMs = 500): Promise<boolean> => await canConnect(client.host, publicAddress, port, timeoutMs)
  const up = async (node: typeof client, ...args: string[]): Promise<void> => { await mesh.warren(['up', '--socket', node.socket, ...args]) }

  // what the client's namespace holds without Warren, and the exit node's forwarding before it offers anything
  await mesh.warren(['down', '--socket', client.socket])
  const clientBefore = await hostNetworkState(client.host)
  const forwardingBefore = await forwardingSettings(exitNode.host, exitNode.iface)
  await up(client)
  await waitFor(async () => (await client.status()).backendState === 'Running' ? true : undefined, { timeoutMs: 120_000, message: 'the client to run again' })
  const clientRunning = await hostNetworkState(client.host)
  t.notOk(await reach(8080), 'without an exit node the client cannot reach the internet host')

  await t.test('bad input is refused and changes nothing', async t => {
    const r = await mesh.warren(['up', '--socket', client.socket, '--exit-node=', '--exit-node-allow-lan-access'], { allowFail: true })
    t.not(r.exitCode, 0)
    t.match(r.stderr, /--exit-node-allow-lan-access needs an exit node/)
    const unknown = await mesh.warren(['up', '--socket', client.socket, '--exit-node', 'router'], { allowFail: true })
    t.match(unknown.stderr, /no peer named "router" offers an exit node: none does yet/, 'an exit node that does not offer itself yet is refused')
    const half = await mesh.warren(['admin', '--state-dir', mesh.controllerStateDir, 'nodes', 'approve-routes', 'router', '0.0.0.0/0'], { allowFail: true })
    t.match(half.stderr, /half of an exit node: give 0\.0\.0\.0\/0 and ::\/0 together/, 'one default route alone is refused')
    t.same(await hostNetworkState(client.host), clientRunning, 'the client is as it was')
  })

  await t.test('the exit node offers itself, approved by autoApprovers.exitNode', async t => {
    await up(exitNode, '--advertise-exit-node')
    await waitFor(async () => (await mesh.warren(['status', '--socket', exitNode.socket])).stdout.includes('offers exit node (approved, in service)') ? true : undefined,
      { timeoutMs: 60_000, message: 'the exit node to be approved' })
    const status = (await mesh.warren(['status', '--socket', client.socket])).stdout
    await waitFor(async () => (await mesh.warren(['status', '--socket', client.socket])).stdout.includes('exit node available: router') ? true : undefined,
      { timeoutMs: 60_000, message: 'the client to see the exit node' })
    t.notMatch(status, /in use/, 'the client does not use it before it says so')
    t.notOk(await reach(8080), 'and still cannot reach the internet host')
  })

  await t.test('with --exit-node the client reaches the allowed port through it, not another', async t => {
    await up(client, '--exit-node', 'router')
    await waitFor(async () => await reach(8080), { timeoutMs: 60_000, message: 'client -> internet:8080 through the exit node' })
    t.ok(await reach(8080, 10_000), 'client -> internet:8080 goes through the exit node')
    t.notOk(await reach(9090), 'client -> internet:9090 is denied at the exit node')
    t.equal((await exitNode.host.exec(['sysctl', '-n', `net.ipv4.conf.${exitNode.iface}.forwarding`])).stdout.trim(), '1', 'the exit node forwards for the mesh interface')
    t.not(await forwardingSettings(exitNode.host, exitNode.iface), forwardingBefore, 'and for its uplink')
    t.match((await mesh.warren(['status', '--socket', client.socket])).stdout, /exit node: router \(in use\)/, 'warren status says which exit node is in use')
    const resolved = await client.host.exec(['getent', 'ahostsv4', 'router.warren.internal'], { allowFail: true })
    t.match(resolved.stdout, new RegExp(exitNode.ipv4.replace(/\./g, '\\.')), 'MagicDNS still answers mesh names')
    const path = await waitForPath(client, exitNode, 'direct')
    t.equal(path.kind, 'direct', 'the daemon\'s path probes to the exit node keep the host\'s routes: the path stays direct')
  })

  await t.test('a policy without autogroup:internet stops it; granting it again restores it', async t => {
    await setPolicy(policy(false), 'no internet')
    await waitFor(async () => !await reach(8080), { timeoutMs: 60_000, message: 'the exit node to stop forwarding' })
    t.notOk(await reach(8080, 2000), 'without autogroup:internet the exit node forwards nothing')
    await setPolicy(policy(true), 'internet again')
    await waitFor(async () => await reach(8080), { timeoutMs: 60_000, message: 'client -> internet:8080 again' })
  })

  await t.test('leaving the exit node stops it and restores the client\'s routing', async t => {
    await up(client, '--exit-node=')
    await waitFor(async () => !await reach(8080), { timeoutMs: 60_000, message: 'the client to leave the exit node' })
    const now = await hostNetworkState(client.host)
    t.same({ rules: now.rules, routes4: now.routes4, routes6: now.routes6, resolvConf: now.resolvConf },
      { rules: clientRunning.rules, routes4: clientRunning.routes4, routes6: clientRunning.routes6, resolvConf: clientRunning.resolvConf },
      'rules, routes and resolver are as before the exit node')
  })

  await t.test('down restores the client and the exit node exactly', async t => {
    await up(client, '--exit-node', 'router')
    await waitFor(async () => await reach(8080), { timeoutMs: 60_000, message: 'the client to use the exit node again' })
    await mesh.warren(['down', '--socket', client.socket])
    t.same(await hostNetworkState(client.host), clientBefore, 'the client\'s links, addresses, routes, rules, nftables and resolv.conf are as before Warren')
    t.notOk(await reach(8080, 2000), 'and it no longer reaches the internet host')
    await mesh.warren(['down', '--socket', exitNode.socket])
    t.equal(await forwardingSettings(exitNode.host, exitNode.iface), forwardingBefore, 'the exit node\'s forwarding settings are as before')
  })
})
