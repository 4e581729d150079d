/** Timing `warren up` with real daemons, shared by the benchmarks that report it. */
import type { Mesh, MeshNode } from '@warren/test'

/** UpTiming is one `warren down` / `warren up` cycle, in ms from starting `warren up`. */
export interface UpTiming {
  /** until the first echo reply from the peer over the mesh */
  toPing: number
  /** until `warren up` itself returned (state Running) */
  upCmd: number
  /** when `warren up` started (Date.now()) */
  startedAt: number
}

/**
 * upToPing takes `a` down and up again and returns how long from starting `warren up` to the
 * first echo reply from `peerIp` over the mesh, and how long `warren up` itself took. A shell
 * in a's namespace pings in a loop (no route, so an instant failure, until the interface is up);
 * each echo waits `echoWaitS` for its reply (1 s by default: an echo sent before the path
 * works then costs up to a second of resolution; a fraction of a second sharpens it).
 */
export async function upToPing (mesh: Mesh, a: MeshNode, peerIp: string, authKey: string, opts: { echoWaitS?: number } = {}): Promise<UpTiming> {
  await mesh.warren(['down', '--socket', a.socket])
  const loop = a.host.spawn(['sh', '-c', `while ! ping -n -c 1 -W ${opts.echoWaitS ?? 1} ${peerIp} >/dev/null 2>&1; do sleep 0.005; done; date +%s%N`])
  const t0 = Date.now()
  await mesh.warren(['up', '--socket', a.socket, '--controller', mesh.url, '--auth-key', authKey, '--hostname', a.name, '--timeout', '120s'])
  const upCmd = Date.now() - t0
  const [, ns] = await loop.waitForLine(/^(\d{10,})$/, 120_000)
  return { toPing: Number(BigInt(ns!) / 1_000_000n) - t0, upCmd, startedAt: t0 }
}
