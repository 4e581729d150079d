import t from 'tap'
import { createSubnetLab, netnsSkipReason, waitFor, measureFailover, primaryFor, routeHolder, canPing, PING_INTERVAL_S } from '../src/index.js'

/**
 * Subnet router high availability in network namespaces: two routers on the same LAN serve
 * the same subnet; the controller names one primary and the client routes through it. When
 * the primary crashes (its interface and daemon gone, so its map session ends), the client
 * moves the route to the standby and its ping to the LAN host goes on; the old primary
 * coming back does not take the route back, and takes it over in turn when the other goes.
 */
const skip = netnsSkipReason()

const POLICY = `{
  "tagOwners": { "tag:router": ["alice@"] },
  "hosts": { "printer": "LAN_HOST/32" },
  "acls": [ { "action": "accept", "src": ["alice@"], "dst": ["printer:*"] } ],
  "autoApprovers": { "routes": { "LAN": ["tag:router"] } },
}
`

t.test('the standby router takes a subnet over when the primary goes away, and keeps it', { skip, timeout: 580_000 }, async t => {
  const { mesh, router, router2, client, lanHost, lan } = await createSubnetLab(t, l => POLICY.replace('LAN_HOST', l.lanHost).replace('"LAN"', `"${l.lan}"`), { routers: 2 })
  const standbyRouter = router2!
  await mesh.warren(['up', '--socket', router.socket, '--advertise-routes', lan])
  await waitFor(async () => await primaryFor(client, lan) === 'router', { timeoutMs: 60_000, message: 'router to be primary (it served first)' })
  await mesh.warren(['up', '--socket', standbyRouter.socket, '--advertise-routes', lan])
  await mesh.warren(['up', '--socket', client.socket, '--accept-routes'])
  await waitFor(async () => (await client.status()).peers.filter(p => p.routes?.includes(lan) === true).length === 2, { timeoutMs: 60_000, message: 'both routers serving the LAN' })
  await waitFor(async () => await canPing(client.host, lanHost.address, 1000), { timeoutMs: 60_000, message: 'client pinging the LAN host' })
  t.equal(await primaryFor(client, lan), 'router', 'the first router stays primary when a second one serves the route')
  t.equal(await routeHolder(client, lan), 'router', 'and the client routes through it')
  t.match((await mesh.warren(['status', '--socket', client.socket])).stdout, /via router2 \(standby\): not used/, 'warren status names the standby')

  const f = await measureFailover(client, lanHost.address, router, standbyRouter)
  t.comment(`failover: pings answered again ${f.resumeMs.toFixed(0)} ms after the primary went away; ${f.lost} echo(s) lost (one every ${PING_INTERVAL_S * 1000} ms)`)
  t.equal(await primaryFor(client, lan), 'router2', 'the standby is primary now')
  t.equal(await routeHolder(client, lan), 'router2', 'and carries the client\'s traffic')
  t.ok(await canPing(client.host, lanHost.address, 5000), 'the client reaches the LAN host through it')

  await router.restart()
  await waitFor(async () => (await client.status()).peers.find(p => p.name === 'router')?.online === true, { timeoutMs: 120_000, message: 'the old primary online again' })
  await waitFor(async () => (await router.status()).controller?.connected === true, { timeoutMs: 60_000, message: 'the old primary connected again' })
  t.equal(await primaryFor(client, lan), 'router2', 'the old primary back online does not take the route back')
  t.equal(await routeHolder(client, lan), 'router2', 'the client keeps routing through router2')
  t.match(await mesh.admin('nodes', 'routes', 'router2'), /served, primary/, 'warren admin nodes routes names the primary')
  t.match(await mesh.admin('nodes', 'routes', 'router'), /served, not primary/, 'and the router that stands by')
  t.ok(await canPing(client.host, lanHost.address, 5000), 'the client still reaches the LAN host')

  // The restarted router made its interface anew and serves again: it takes over in turn.
  const back = await measureFailover(client, lanHost.address, standbyRouter, router)
  t.comment(`failover back: pings answered again ${back.resumeMs.toFixed(0)} ms after router2 went away; ${back.lost} echo(s) lost`)
  t.equal(await routeHolder(client, lan), 'router', 'the returned router carries the route once router2 is gone')
})
