/**
 * failover-bench measures subnet router high availability: two routers on one LAN serve the
 * same subnet, a client with --accept-routes pings a LAN host every 100 ms, and each round
 * takes the primary router down. The figure is the time from then until the pings are
 * answered again through the standby, and the echoes lost; the router then comes back (as
 * the standby) and the next round takes the other one down. Needs root, wg, wireguard-go
 * (or kernel WireGuard), nft.
 *
 * --mode crash (default): the primary crashes (wireguard-go and daemon killed at once), so
 *   its map session ends at once.
 * --mode cut: the primary's network is cut (its backbone link goes down), so its session
 *   falls silent and only the controller's keepalive notices. Measured twice in one run:
 *   with routers pinged every 15 s like every other node (the baseline: how it was), and
 *   with the routers' own 3 s keepalive (`--router-keepalive`, the default).
 *
 *   node bench/dist/src/failover-bench.js [--mode crash|cut] [--rounds 5] [--write]
 */
import { createSubnetLab, createTeardownScope, netnsSkipReason, waitFor, canPing, measureFailover, primaryFor, crashRouter, cutRouter, PING_INTERVAL_S, type MeshNode, type TeardownScope } from '@warren/test'
import { median, printTable, argValue, loadNow, loadLine, publish } from './report.js'

const mode = argValue('--mode', 'crash')
if (mode !== 'crash' && mode !== 'cut') throw new Error(`--mode takes crash or cut, not "${mode}"`)
const rounds = Number(argValue('--rounds', mode === 'cut' ? '3' : '5'))
const command = `node bench/dist/src/failover-bench.js --mode ${mode} --rounds ${rounds}${process.argv.includes('--write') ? ' --write' : ''}`

const POLICY = `{
  "tagOwners": { "tag:router": ["alice@"] },
  "acls": [ { "action": "accept", "src": ["*"], "dst": ["*:*"] } ],
}
`

const scopes: TeardownScope[] = []
process.on('SIGINT', () => { for (const s of scopes) s.fail(); void Promise.all(scopes.map(s => s.cleanup())).then(() => process.exit(130)) })

interface Rounds { resume: number[], lost: number[] }

/** failoverRounds builds a lab (the controller started with `controllerArgs`) and takes the primary down `rounds` times. */
async function failoverRounds (label: string, controllerArgs: string[]): Promise<Rounds> {
  const scope = createTeardownScope(console.error)
  scopes.push(scope)
  try {
    const { mesh, router, router2, client, lanHost, lan } = await createSubnetLab(scope.t, () => POLICY, { routers: 2, controllerArgs })
    const routers = new Map<string, MeshNode>([[router.name, router], [router2!.name, router2!]])
    for (const r of routers.values()) {
      await mesh.warren(['up', '--socket', r.socket, '--advertise-routes', lan])
      await waitFor(async () => JSON.parse(await mesh.admin('nodes', 'routes', r.name, '--json')).advertised.length > 0, { timeoutMs: 60_000, message: `${r.name} to advertise the LAN` })
      await mesh.admin('nodes', 'approve-routes', r.name, lan)
    }
    await mesh.warren(['up', '--socket', client.socket, '--accept-routes'])
    await waitFor(async () => await canPing(client.host, lanHost.address, 1000), { timeoutMs: 120_000, message: 'client pinging the LAN host' })
    const out: Rounds = { resume: [], lost: [] }
    for (let i = 0; i < rounds; i++) {
      const name = await waitFor(async () => await primaryFor(client, lan), { timeoutMs: 60_000, message: 'a primary router' })
      const primary = routers.get(name)!
      const standby = [...routers.values()].find(r => r !== primary)!
      let reconnect = async (): Promise<void> => { await primary.restart() }
      const takeDown = mode === 'crash' ? crashRouter : async (r: MeshNode) => { reconnect = await cutRouter(r) }
      const f = await measureFailover(client, lanHost.address, primary, standby, 120_000, takeDown)
      out.resume.push(f.resumeMs)
      out.lost.push(f.lost)
      console.error(`${label} round ${i + 1}/${rounds}: ${primary.name} -> ${standby.name}: answered again after ${f.resumeMs.toFixed(0)} ms, ${f.lost} echo(s) lost`)
      await reconnect()
      await waitFor(async () => (await client.status()).peers.find(p => p.name === primary.name)?.online === true, { timeoutMs: 180_000, message: `${primary.name} back online` })
    }
    return out
  } catch (e) {
    scope.fail()
    throw e
  } finally {
    await scope.cleanup()
  }
}

const rowsOf = (what: string, r: Rounds): string[][] => [
  [`${what}: pings answered again through the standby (ms)`, median(r.resume).toFixed(0), r.resume.map(x => x.toFixed(0)).join(' ')],
  [`${what}: echoes lost (one every ${PING_INTERVAL_S * 1000} ms)`, median(r.lost).toFixed(0), r.lost.join(' ')]
]

async function run (): Promise<void> {
  const skip = netnsSkipReason()
  if (skip !== false) throw new Error(`failover-bench: ${skip}`)
  const load0 = loadNow()
  if (mode === 'crash') {
    const r = await failoverRounds('crash', [])
    const load1 = loadNow()
    const table = printTable(['primary router crashes', 'median', 'runs'], rowsOf('crash', r))
    publish('Subnet router: failover', command,
      'In namespaces: a controller, two router nodes on the backbone and one LAN serving the same approved route, a client node with ' +
      '`--accept-routes` pinging a LAN host that runs no Warren every 100 ms. Each round crashes the primary router (its wireguard-go ' +
      'and its daemon killed with SIGKILL: its interface goes, and its map session ends); the controller names the standby primary and the client moves ' +
      `the route at once. ${rounds} rounds, alternating routers (the crashed one returns as the standby and does not take the route back). ` +
      `Resolution: the ping interval (${PING_INTERVAL_S * 1000} ms).`, table,
      [`Failover between two routers: **${median(r.resume).toFixed(0)} ms** median (the issue asks for "within a few seconds").`, loadLine(load0, load1)].join('\n'))
    return
  }
  const baseline = await failoverRounds('15 s keepalive', ['--router-keepalive', '15s'])
  const fast = await failoverRounds('3 s keepalive', ['--router-keepalive', '3s'])
  const load1 = loadNow()
  const table = printTable(['primary router cut off', 'median', 'runs'], [...rowsOf('routers pinged every 15 s (baseline)', baseline), ...rowsOf('routers pinged every 3 s', fast)])
  const ratio = median(fast.resume) / median(baseline.resume)
  publish('Subnet router: failover when its network is cut', command,
    'The failover lab (two routers, one LAN, a client pinging a LAN host every 100 ms), but each round cuts the primary router\'s network ' +
    '(its backbone link set down): no FIN or RST reaches the controller, which notices the router only when it misses a keepalive ping ' +
    '(a socket that has not answered the previous ping is closed, so within two intervals). Two labs in one run: routers pinged every 15 s ' +
    'like every other node (how it was), then every 3 s (`warren controller serve --router-keepalive 3s`, the default). ' +
    `${rounds} rounds each, alternating routers; the cut router's link comes back up and it rejoins as the standby.`, table,
    [`Cut primary replaced: **${(median(fast.resume) / 1000).toFixed(1)} s** median with the 3 s router keepalive against ` +
      `${(median(baseline.resume) / 1000).toFixed(1)} s with 15 s (ratio ${ratio.toFixed(2)}).`, loadLine(load0, load1)].join('\n'))
}

run().catch(e => { console.error(e instanceof Error ? e.message : e); process.exitCode = 1 })
