import t from 'tap'
import type { NodeRoutes } from '@warren/protocol'
import { createSubnetLab, netnsSkipReason, waitFor, type Host } from '../src/index.js'
import { createMesh, canConnect, FLOW_ARGV } from '../src/mesh.js'

/**
 * A subnet router end to end, in network namespaces: a LAN with a host that runs no Warren,
 * a router node on the backbone and the LAN, and alice's client on the backbone only. The
 * route needs approval (by an admin, or at once by the policy's autoApprovers); a client
 * with --accept-routes then reaches the port the policy allows on the LAN host and not
 * another, the router judging the traffic it forwards; `down` on the router puts its
 * forwarding settings back and removes its table.
 */
const skip = netnsSkipReason()

function policy (lanHost: string, lan: string, autoApprove: boolean): string {
  return `{
  "groups": { "group:eng": ["alice@"] },
  "tagOwners": { "tag:router": ["alice@"] },
  "hosts": { "printer": "${lanHost}/32" },
  "acls": [
    // alice reaches the LAN host's port 8080 through the router, and nothing else there
    { "action": "accept", "src": ["group:eng"], "dst": ["printer:8080"], "proto": "tcp" },
    { "action": "accept", "src": ["group:eng"], "dst": ["tag:router:22"] },
  ],
${autoApprove ? `  "autoApprovers": { "routes": { "${lan.replace(/^(\d+\.\d+)\.\d+\.0\/24$/, '$1.0.0/16')}": ["tag:router"] } },\n` : ''}}
`
}

async function sysctl (h: Host, key: string): Promise<string> {
  return (await h.exec(['sysctl', '-n', key])).stdout.trim()
}

t.test('a subnet router forwards what the policy allows into its LAN', { skip, timeout: 580_000 }, async t => {
  const { mesh, router: routerNode, client, lanHost, lan, routerLan, setPolicy } = await createSubnetLab(t, l => policy(l.lanHost, l.lan, false))
  const router = routerNode.host
  const lanIf = routerLan.name
  const before = { lanIf: await sysctl(router, `net.ipv4.conf.${lanIf}.forwarding`), all: await sysctl(router, 'net.ipv4.ip_forward') }
  const server = lanHost.spawn([...FLOW_ARGV, 'serve', '8080,9090'])
  await server.waitForLine(/^listening$/, 60_000)

  const routes = async (): Promise<NodeRoutes> => JSON.parse(await mesh.admin('nodes', 'routes', 'router', '--json')) as NodeRoutes
  const reach = async (port: number, timeoutMs = 500): Promise<boolean> => await canConnect(client.host, lanHost.address, port, timeoutMs)
  const routeOnClient = async (): Promise<boolean> =>
    (await client.host.exec(['ip', 'route', 'show', 'dev', client.iface])).stdout.includes(lan)

  await t.test('bad routes are refused with a clear error and change nothing', async t => {
    const bad = await mesh.warren(['up', '--socket', routerNode.socket, '--advertise-routes', '10.1.2.3/24'], { allowFail: true })
    t.not(bad.exitCode, 0, 'host bits set: refused')
    t.match(bad.stderr, /host bits set: did you mean 10\.1\.2\.0\/24/, 'the error says what to write')
    const mesh4 = await mesh.warren(['up', '--socket', routerNode.socket, '--advertise-routes', '100.64.0.0/16'], { allowFail: true })
    t.match(mesh4.stderr, /overlaps the mesh's own IPv4 range/, 'the mesh\'s own range: refused')
    t.same((await routes()).advertised, [], 'nothing was advertised')
  })

  await t.test('an advertised route waits for approval and is not used before', async t => {
    await mesh.warren(['up', '--socket', routerNode.socket, '--advertise-routes', lan])
    await mesh.warren(['up', '--socket', client.socket, '--accept-routes'])
    const r = await waitFor(async () => { const x = await routes(); return x.advertised.length > 0 ? x : undefined }, { timeoutMs: 60_000, message: 'the router to advertise its LAN' })
    t.same(r, { node: 'router', advertised: [lan], approved: [], served: [] }, 'advertised, not approved')
    t.match(await mesh.admin('nodes', 'routes', 'router'), /awaiting approval/, 'the admin listing says so')
    t.notOk(await routeOnClient(), 'the client has no route to the LAN')
    t.notOk(await reach(8080), 'and cannot reach the LAN host')
    t.equal(await sysctl(router, `net.ipv4.conf.${lanIf}.forwarding`), before.lanIf, 'the router forwards nothing yet')
  })

  await t.test('once approved, the client reaches the allowed port and not another', async t => {
    await mesh.admin('nodes', 'approve-routes', 'router', lan)
    await waitFor(routeOnClient, { timeoutMs: 60_000, message: 'the client to route the LAN through the mesh' })
    await waitFor(async () => await reach(8080), { timeoutMs: 60_000, message: 'client -> LAN host:8080 (allowed)' })
    t.ok(await reach(8080, 10_000), 'client -> LAN host:8080 connects through the router')
    t.notOk(await reach(9090), 'client -> LAN host:9090 is denied at the router')
    t.equal(await sysctl(router, `net.ipv4.conf.${routerNode.iface}.forwarding`), '1', 'forwarding is on for the mesh interface')
    t.equal(await sysctl(router, 'net.ipv4.ip_forward'), before.all, 'and not switched on for every interface')
    const st = await client.status()
    t.same(st.peers.find(p => p.name === 'router')?.routesInUse, [lan], 'the client\'s status shows the route in use')
    const status = (await mesh.warren(['status', '--socket', client.socket])).stdout
    t.match(status, new RegExp(`route ${lan.replace(/\./g, '\\.')} via router \\(primary\\): in use`), 'warren status says so')
  })

  await t.test('revoking the approval takes the route away; autoApprovers approve it at once', async t => {
    await mesh.admin('nodes', 'approve-routes', 'router')
    await waitFor(async () => !await routeOnClient(), { timeoutMs: 60_000, message: 'the route to leave the client' })
    t.notOk(await reach(8080), 'the LAN host is out of reach again')
    await setPolicy(policy(lanHost.address, lan, true), 'autoApprovers')
    const r = await waitFor(async () => { const x = await routes(); return x.served.length > 0 ? x : undefined }, { timeoutMs: 60_000, message: 'autoApprovers to approve the route' })
    t.same(r.approved, [lan], 'the policy approved the route (its /16 covers the /24)')
    await waitFor(async () => await reach(8080), { timeoutMs: 60_000, message: 'client -> LAN host:8080 after auto-approval' })
    t.pass('the client reaches the LAN host again')
    // advertised anew while the policy approves it: served at once, no admin involved
    await mesh.admin('nodes', 'approve-routes', 'router')
    await mesh.warren(['up', '--socket', routerNode.socket, '--advertise-routes', ''])
    await waitFor(async () => (await routes()).advertised.length === 0 ? true : undefined, { timeoutMs: 60_000, message: 'the router to stop advertising' })
    await mesh.warren(['up', '--socket', routerNode.socket, '--advertise-routes', lan])
    const again = await waitFor(async () => { const x = await routes(); return x.advertised.length > 0 ? x : undefined }, { timeoutMs: 60_000, message: 'the router to advertise again' })
    t.same(again.served, [lan], 'the route is approved the moment it is advertised')
    await waitFor(async () => await reach(8080), { timeoutMs: 60_000, message: 'client -> LAN host:8080 after advertising again' })
  })

  await t.test('with --snat-subnet-routes=false the LAN host sees the mesh address and must route it back', async t => {
    await mesh.warren(['up', '--socket', routerNode.socket, '--snat-subnet-routes=false'])
    await waitFor(async () => !await reach(8080), { timeoutMs: 60_000, message: 'the masquerade to stop (the LAN host has no route back to the mesh)' })
    t.notOk(await reach(8080), 'without masquerade and without a route back, the LAN host cannot answer')
    await lanHost.exec(['ip', 'route', 'add', '100.64.0.0/10', 'via', routerLan.address])
    await waitFor(async () => await reach(8080), { timeoutMs: 60_000, message: 'client -> LAN host:8080 with a route back' })
    t.pass('with a route back to the mesh through the router, it answers the client\'s own address')
    t.notOk(await reach(9090), 'and the router still judges: 9090 is denied')
  })

  await t.test('down on the router restores forwarding and removes its table', async t => {
    await mesh.warren(['down', '--socket', routerNode.socket])
    t.equal(await sysctl(router, `net.ipv4.conf.${lanIf}.forwarding`), before.lanIf, 'the LAN interface forwards as before')
    t.equal(await sysctl(router, 'net.ipv4.ip_forward'), before.all, 'ip_forward is as before')
    t.notMatch((await router.exec(['nft', 'list', 'tables'])).stdout, /warren/, 'Warren\'s table is gone')
    t.notOk(await reach(8080, 2000), 'the client no longer reaches the LAN')
  })
})
