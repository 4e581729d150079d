import t from 'tap'
import { createSubnetLab, netnsSkipReason, waitFor, primaryFor, routeHolder, canPing } from '../src/index.js'

/**
 * A grant with `via` in network namespaces: two routers on the same LAN serve the same
 * subnet, and the grant names only the second one's tag. The client reaches the LAN through
 * that router even though the other is the subnet's primary, which is not even its peer.
 */
const skip = netnsSkipReason()

const POLICY = `{
  "tagOwners": { "tag:router": ["alice@"], "tag:router-b": ["alice@"] },
  "grants": [ { "src": ["alice@"], "dst": ["LAN"], "ip": ["*"], "via": ["tag:router-b"] } ],
  "autoApprovers": { "routes": { "LAN": ["tag:router", "tag:router-b"] } },
}
`

t.test('via picks the tagged router for a subnet two routers serve', { skip, timeout: 580_000 }, async t => {
  const { mesh, router, router2, client, lanHost, lan } = await createSubnetLab(t, l => POLICY.replaceAll('LAN', l.lan), { routers: 2, router2Tag: 'tag:router-b' })
  await mesh.warren(['up', '--socket', router.socket, '--advertise-routes', lan])
  await waitFor(async () => JSON.parse(await mesh.admin('nodes', 'routes', 'router', '--json')).primary?.includes(lan) === true,
    { timeoutMs: 60_000, message: 'router to be primary (it served first)' })
  await mesh.warren(['up', '--socket', router2!.socket, '--advertise-routes', lan])
  await mesh.warren(['up', '--socket', client.socket, '--accept-routes'])
  await waitFor(async () => await routeHolder(client, lan) === 'router2', { timeoutMs: 60_000, message: 'the client routing the LAN through router2' })
  t.ok(await canPing(client.host, lanHost.address, 5000), 'the client reaches the LAN host through the router the grant names')
  t.notOk((await client.status()).peers.some(p => p.name === 'router'), 'the primary router, not named by via, is not even its peer')
  t.equal(await primaryFor(client, lan), undefined, 'the primary is a router it does not see; router2 carries the LAN all the same')
  t.match((await mesh.warren(['status', '--socket', router2!.socket])).stdout, /approved, served, standby/, 'router2 itself knows it is the standby of the subnet')
  t.match((await mesh.warren(['status', '--socket', router.socket])).stdout, /approved, served, primary/, 'and router that it is the primary')
})
