/**
 * routes-bench measures a subnet router's data path in one run: TCP throughput (one iperf3
 * stream) from a client with --accept-routes to a LAN host behind the router (through
 * WireGuard, the router's forward filter and its masquerade), against the same client to
 * the router's own mesh address (WireGuard and its inbound filter only). Rounds alternate
 * the two targets, so load on the shared machine hits both alike; the ratio of medians is
 * the figure (goal >= 0.9, issue 11). Needs root, wg, wireguard-go (or kernel WireGuard),
 * nft, iperf3.
 *
 *   node bench/dist/src/routes-bench.js [--rounds 5] [--seconds 5] [--write]
 */
import { createSubnetLab, createTeardownScope, netnsSkipReason, waitFor, canConnect, type Host } from '@warren/test'
import { median, printTable, argValue, loadNow, loadLine, publish } from './report.js'

const rounds = Number(argValue('--rounds', '5'))
const seconds = Number(argValue('--seconds', '5'))
const command = `node bench/dist/src/routes-bench.js --rounds ${rounds} --seconds ${seconds}${process.argv.includes('--write') ? ' --write' : ''}`
/** GOAL: the throughput through the router over the throughput to it (issue 11) */
const GOAL = 0.9

const POLICY = `{
  "tagOwners": { "tag:router": ["alice@"] },
  "acls": [ { "action": "accept", "src": ["*"], "dst": ["*:*"] } ],
}
`

const scope = createTeardownScope(console.error)
process.on('SIGINT', () => { scope.fail(); void scope.cleanup().then(() => process.exit(130)) })

/** iperf runs one TCP stream from `from` to ip:5201 and returns Mbit/s at the receiver. */
async function iperf (from: Host, ip: string): Promise<number> {
  const r = await from.exec(['iperf3', '-c', ip, '-t', String(seconds), '-O', '1', '-J'], { allowFail: true, timeoutMs: (seconds + 30) * 1000 })
  if (r.exitCode !== 0) throw new Error(`iperf3 to ${ip} failed: ${r.stderr || r.stdout.slice(0, 400)}`)
  return (JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second / 1e6
}

async function run (): Promise<void> {
  const skip = netnsSkipReason()
  if (skip !== false) throw new Error(`routes-bench: ${skip}`)
  const load0 = loadNow()
  const lab = await createSubnetLab(scope.t, () => POLICY)
  const { mesh, router, client, lanHost, lan } = lab
  await mesh.warren(['up', '--socket', router.socket, '--advertise-routes', lan])
  await mesh.warren(['up', '--socket', client.socket, '--accept-routes'])
  await waitFor(async () => JSON.parse(await mesh.admin('nodes', 'routes', 'router', '--json')).advertised.length > 0, { timeoutMs: 60_000, message: 'the router to advertise its LAN' })
  await mesh.admin('nodes', 'approve-routes', 'router', lan)
  for (const h of [router.host, lanHost]) {
    const server = h.spawn(['iperf3', '-s', '--forceflush'])
    await server.waitForLine(/Server listening/, 30_000)
  }
  await waitFor(async () => await canConnect(client.host, lanHost.address, 5201, 2000), { timeoutMs: 120_000, message: 'client -> LAN host through the router' })
  const toRouter: number[] = []
  const through: number[] = []
  for (let r = 0; r < rounds; r++) {
    toRouter.push(await iperf(client.host, router.ipv4))
    through.push(await iperf(client.host, lanHost.address))
    console.error(`round ${r + 1}/${rounds}: to the router ${toRouter.at(-1)!.toFixed(0)} Mbit/s, through it ${through.at(-1)!.toFixed(0)} Mbit/s`)
  }
  const load1 = loadNow()
  const ratio = median(through) / median(toRouter)
  const show = (xs: number[]): string[] => [median(xs).toFixed(0), xs.map(x => x.toFixed(0)).join(' ')]
  const table = printTable(['client ->', 'median Mbit/s', 'runs'], [
    ['router (its mesh address)', ...show(toRouter)],
    ['LAN host through the router (forward filter, masquerade)', ...show(through)]
  ])
  const summary = [
    `Through the router over to the router: **${ratio.toFixed(2)}** (goal >= ${GOAL}): ${ratio >= GOAL ? 'met' : 'NOT met'}.`,
    loadLine(load0, load1)
  ].join('\n')
  publish('Subnet router: throughput', command,
    'One run in namespaces: a controller, a router node on the backbone and a LAN, a client node with `--accept-routes` on the backbone, ' +
    `and a LAN host that runs no Warren. One iperf3 TCP stream of ${seconds} s (the first second left out) from the client, ${rounds} rounds, ` +
    'alternating the router\'s own mesh address and the LAN host through the router (approved route, allow-all policy, masquerade on).', table, summary)
}

run().catch(e => { scope.fail(); console.error(e instanceof Error ? e.message : e); process.exitCode = 1 }).finally(scope.cleanup)
