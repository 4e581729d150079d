import type { MeshNode } from './mesh.js'
import { waitFor } from './process.js'

/**
 * router-failover takes a subnet's primary router down while a client pings a host behind
 * it, and measures how long the pings go unanswered until the standby router carries them.
 */

/** PING_INTERVAL_S is the time between echo requests: the resolution of the figures. */
export const PING_INTERVAL_S = 0.1

/** Failover is what the client's ping saw: the time from the crash to the first answer through the standby, and the echoes lost. */
export interface Failover { resumeMs: number, lost: number }

interface Reply { at: number, seq: number }

function replies (output: string): Reply[] {
  return [...output.matchAll(/^\[(\d+\.\d+)\] \d+ bytes from .*icmp_seq=(\d+)/gm)].map(m => ({ at: Number(m[1]), seq: Number(m[2]) }))
}

/**
 * crashRouter models a router that goes away at once: its WireGuard (the wireguard-go
 * process serving its interface, which takes the interface with it; a kernel interface is
 * deleted) and its daemon (so its map session) are killed. A restarted daemon makes the interface anew.
 */
export async function crashRouter (router: MeshNode): Promise<void> {
  const found = await router.host.exec(['pgrep', '-f', `wireguard-go ${router.iface}$`], { allowFail: true })
  const pids = found.stdout.split('\n').filter(Boolean)
  // Kernel WireGuard has no process: the interface itself goes.
  await router.host.exec(pids.length > 0 ? ['kill', '-KILL', ...pids] : ['ip', 'link', 'del', router.iface])
  await router.proc.kill('SIGKILL')
  await waitFor(async () => (await router.host.exec(['ip', 'link', 'show', router.iface], { allowFail: true })).exitCode !== 0,
    { timeoutMs: 30_000, message: `${router.iface} gone with its wireguard-go on ${router.name}` })
}

/**
 * cutRouter models a router whose network is cut: its backbone interface goes down, so its
 * map session falls silent (no FIN, no RST) and WireGuard packets to it are lost. The
 * controller notices only by its keepalive. It returns what reconnects the router.
 */
export async function cutRouter (router: MeshNode): Promise<() => Promise<void>> {
  const backbone = router.host.interfaces.find(i => i.network === 'backbone')
  if (backbone === undefined) throw new Error(`${router.name} has no backbone interface to cut`)
  await router.host.exec(['ip', 'link', 'set', 'dev', backbone.name, 'down'])
  return async () => { await router.host.exec(['ip', 'link', 'set', 'dev', backbone.name, 'up']) }
}

/**
 * measureFailover pings `target` from `client` every PING_INTERVAL_S, takes `primary` down
 * (`takeDown`: crashRouter unless given, or cutRouter), and waits (up to `timeoutMs`) until
 * `standby` carries the route and answers come back after the hole that made. The pinger
 * is stopped before it returns.
 */
export async function measureFailover (client: MeshNode, target: string, primary: MeshNode, standby: MeshNode, timeoutMs = 120_000,
  takeDown: (router: MeshNode) => Promise<unknown> = crashRouter): Promise<Failover> {
  const ping = client.host.spawn(['ping', '-D', '-n', '-i', String(PING_INTERVAL_S), '-W', '1', target])
  try {
    await waitFor(() => replies(ping.output()).length > 0, { timeoutMs: 30_000, message: `${client.name} pinging ${target} before the crash` })
    const crashedAt = Date.now() / 1000
    await takeDown(primary)
    // From here on the old primary is gone or cut off: every answer came through the standby.
    const downAt = Date.now() / 1000
    const resumed = await waitFor(() => {
      const rs = replies(ping.output())
      const i = rs.findIndex(r => r.at > downAt)
      return i < 1 ? undefined : { at: rs[i]!.at, lost: rs[i]!.seq - rs[i - 1]!.seq - 1 }
    }, { timeoutMs, message: `${client.name}'s pings to ${target} answered again after ${primary.name} went away` })
    await waitFor(async () => (await client.status()).peers.find(p => p.name === standby.name)?.routesInUse !== undefined,
      { timeoutMs, message: `${client.name} routing through ${standby.name}` })
    return { resumeMs: Math.max(0, (resumed.at - crashedAt) * 1000), lost: resumed.lost }
  } finally {
    await ping.kill()
  }
}

/** routeHolder is the name of the peer `client` sends `route` through, if any. */
export async function routeHolder (client: MeshNode, route: string): Promise<string | undefined> {
  return (await client.status()).peers.find(p => p.routesInUse?.includes(route) === true)?.name
}

/** primaryFor is the name of the peer the controller names primary for `route`, as `client` sees it. */
export async function primaryFor (client: MeshNode, route: string): Promise<string | undefined> {
  return (await client.status()).peers.find(p => p.primaryRoutes?.includes(route) === true)?.name
}
