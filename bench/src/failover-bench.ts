/**
 * failover-bench measures subnet router high availability: two routers on one LAN serve the
 * same subnet, a client with --accept-routes pings a LAN host every 100 ms, and each round
 * crashes the primary router (its wireguard-go and daemon killed at once). The figure
 * is the time from the crash until the pings are answered again through the standby, and
 * the echoes lost; the crashed router then comes back (as the standby) and the next round
 * crashes the other one. Needs root, wg, wireguard-go (or kernel WireGuard), nft.
 *
 *   node bench/dist/src/failover-bench.js [--rounds 5] [--write]
 */
import { createSubnetLab, createTeardownScope, netnsSkipReason, waitFor, canPing, measureFailover, primaryFor, PING_INTERVAL_S, type MeshNode } from '@warren/test'
import { median, printTable, argValue, loadNow, loadLine, publish } from './report.js'

const rounds = Number(argValue('--rounds', '5'))
const command = `node bench/dist/src/failover-bench.js --rounds ${rounds}${process.argv.includes('--write') ? ' --write' : ''}`

const POLICY = `{
  "tagOwners": { "tag:router": ["alice@"] },
  "acls": [ { "action": "accept", "src": ["*"], "dst": ["*:*"] } ],
}
`

const scope = createTeardownScope(console.error)
process.on('SIGINT', () => { scope.fail(); void scope.cleanup().then(() => process.exit(130)) })

async function run (): Promise<void> {
  const skip = netnsSkipReason()
  if (skip !== false) throw new Error(`failover-bench: ${skip}`)
  const load0 = loadNow()
  const { mesh, router, router2, client, lanHost, lan } = await createSubnetLab(scope.t, () => POLICY, { routers: 2 })
  const routers = new Map<string, MeshNode>([[router.name, router], [router2!.name, router2!]])
  for (const r of routers.values()) {
    await mesh.warren(['up', '--socket', r.socket, '--advertise-routes', lan])
    await waitFor(async () => JSON.parse(await mesh.admin('nodes', 'routes', r.name, '--json')).advertised.length > 0, { timeoutMs: 60_000, message: `${r.name} to advertise the LAN` })
    await mesh.admin('nodes', 'approve-routes', r.name, lan)
  }
  await mesh.warren(['up', '--socket', client.socket, '--accept-routes'])
  await waitFor(async () => await canPing(client.host, lanHost.address, 1000), { timeoutMs: 120_000, message: 'client pinging the LAN host' })
  const resume: number[] = []
  const lost: number[] = []
  for (let i = 0; i < rounds; i++) {
    const name = await waitFor(async () => await primaryFor(client, lan), { timeoutMs: 60_000, message: 'a primary router' })
    const primary = routers.get(name)!
    const standby = [...routers.values()].find(r => r !== primary)!
    const f = await measureFailover(client, lanHost.address, primary, standby)
    resume.push(f.resumeMs)
    lost.push(f.lost)
    console.error(`round ${i + 1}/${rounds}: ${primary.name} -> ${standby.name}: answered again after ${f.resumeMs.toFixed(0)} ms, ${f.lost} echo(s) lost`)
    await primary.restart()
    await waitFor(async () => (await client.status()).peers.find(p => p.name === primary.name)?.online === true, { timeoutMs: 120_000, message: `${primary.name} back online` })
  }
  const load1 = loadNow()
  const table = printTable(['primary router crashes', 'median', 'runs'], [
    ['pings answered again through the standby (ms)', median(resume).toFixed(0), resume.map(x => x.toFixed(0)).join(' ')],
    [`echoes lost (one every ${PING_INTERVAL_S * 1000} ms)`, median(lost).toFixed(0), lost.join(' ')]
  ])
  const summary = [
    `Failover between two routers: **${median(resume).toFixed(0)} ms** median (the issue asks for "within a few seconds").`,
    loadLine(load0, load1)
  ].join('\n')
  publish('Subnet router: failover', command,
    'In namespaces: a controller, two router nodes on the backbone and one LAN serving the same approved route, a client node with ' +
    '`--accept-routes` pinging a LAN host that runs no Warren every 100 ms. Each round crashes the primary router (its wireguard-go ' +
    'and its daemon killed with SIGKILL: its interface goes, and its map session ends); the controller names the standby primary and the client moves ' +
    `the route at once. ${rounds} rounds, alternating routers (the crashed one returns as the standby and does not take the route back). ` +
    `Resolution: the ping interval (${PING_INTERVAL_S * 1000} ms).`, table, summary)
}

run().catch(e => { scope.fail(); console.error(e instanceof Error ? e.message : e); process.exitCode = 1 }).finally(scope.cleanup)
