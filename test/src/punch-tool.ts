import { fileURLToPath } from 'node:url'
import { createSocket } from 'node:dgram'
import { classifyWgPortPacket } from '@warren/protocol'
import { createDisco, createPathManager, DEFAULT_PATH_TIMINGS, type SharedPort, type SharedPortPacket } from '@warren/node'

/**
 * punch-tool runs Warren's path probing alone (no WireGuard, no daemon) inside a NAT lab
 * namespace, so a test can show what the first probes through two NATs do:
 *
 *   WARREN_PUNCH_KEY=<our private key> node punch-tool.js PORT PEERKEY CANDIDATE[,CANDIDATE...] TTL START_AT_MS RUN_MS
 *
 * It binds PORT (standing in for the WireGuard port), starts probing the peer at the
 * wall-clock time START_AT_MS (both sides start together), runs for RUN_MS, then prints
 * one JSON line: the path it chose and, per candidate, whether its first full ping was
 * answered. TTL is the punch TTL (2 punches; 64 shows what happens without punching).
 */

/** PunchReport is what punch-tool prints. */
export interface PunchReport {
  path?: { kind: string, endpoint: string }
  /** per candidate: was the first full ping to it answered? */
  firstPingAnswered: Record<string, boolean>
  fullPings: number
  /** how late after START_AT_MS probing began (a late side breaks the simultaneous start) */
  lateMs: number
}

/** PUNCH_TOOL_ARGV runs this file's tool with this node binary. */
export const PUNCH_TOOL_ARGV = [process.execPath, compiledSelf()]

function compiledSelf (): string {
  const here = fileURLToPath(import.meta.url)
  return here.endsWith('.ts') ? here.replace(/src\/punch-tool\.ts$/, 'dist/src/punch-tool.js') : here
}

/**
 * socketPort is a SharedPort that owns its UDP port outright: fine here, where nothing
 * else (no WireGuard) uses the port. TTL changes apply to the socket, so sends are one at
 * a time, each with its own TTL.
 */
async function socketPort (port: number): Promise<SharedPort> {
  const sock = createSocket('udp4')
  await new Promise<void>((resolve, reject) => { sock.once('error', reject); sock.bind(port, resolve) })
  const handlers = new Set<(p: SharedPortPacket) => void>()
  sock.on('message', (data, r) => {
    if (classifyWgPortPacket(data) !== 'control') return
    for (const h of handlers) h({ kind: 'control', data, from: { address: r.address, port: r.port } })
  })
  let queue = Promise.resolve()
  return {
    wgPort: port,
    send: async (data, to, opts) => {
      queue = queue.then(async () => {
        sock.setTTL(opts?.ttl ?? 64)
        await new Promise<void>(resolve => sock.send(data, to.port, to.address, () => resolve()))
      })
      await queue
    },
    onPacket: (kind, h) => {
      if (kind === 'control') handlers.add(h)
      return () => handlers.delete(h)
    },
    close: async () => { sock.close() }
  }
}

async function main (args: string[]): Promise<void> {
  const [port, peerKey, candidates, ttl, startAt, runMs] = args
  const privateKey = process.env.WARREN_PUNCH_KEY
  if (privateKey === undefined || peerKey === undefined || candidates === undefined || runMs === undefined) {
    process.stderr.write('usage: WARREN_PUNCH_KEY=KEY punch-tool PORT PEERKEY CANDIDATE[,...] TTL START_AT_MS RUN_MS\n')
    process.exitCode = 2
    return
  }
  const shared = await socketPort(Number(port))
  const disco = createDisco({ port: shared, privateKey })
  disco.setPeers([peerKey])
  const firstTxid = new Map<string, string>()
  const firstPingAnswered: Record<string, boolean> = {}
  let fullPings = 0
  const manager = createPathManager({
    now: () => performance.now(),
    punchTtl: Number(ttl),
    probes: {
      ping (key, to, opts) {
        const txid = disco.ping(key, to, opts)
        const ep = `${to.address}:${to.port}`
        if (opts?.ttl === undefined) {
          fullPings++
          if (!firstTxid.has(ep)) { firstTxid.set(ep, txid); firstPingAnswered[ep] = false }
        }
        return txid
      }
    }
  })
  let timer: NodeJS.Timeout | undefined
  const run = (): void => {
    clearTimeout(timer)
    timer = setTimeout(run, Math.max(10, Math.min(manager.tick(), DEFAULT_PATH_TIMINGS.heartbeatMs)))
  }
  disco.onPing((k, from) => { manager.handlePing(k, from); run() })
  disco.onPong(pong => {
    const ep = [...firstTxid].find(([, txid]) => txid === pong.txid)?.[0]
    if (ep !== undefined) firstPingAnswered[ep] = true
    manager.handlePong(pong)
    run()
  })
  await new Promise(resolve => setTimeout(resolve, Math.max(0, Number(startAt) - Date.now())))
  const lateMs = Date.now() - Number(startAt)
  manager.setPeers([{ wgKey: peerKey, endpoints: candidates.split(',') }])
  run()
  await new Promise(resolve => setTimeout(resolve, Number(runMs)))
  clearTimeout(timer)
  const path = manager.path(peerKey)
  const report: PunchReport = { ...(path !== undefined ? { path: { kind: path.kind, endpoint: path.endpoint } } : {}), firstPingAnswered, fullPings, lateMs }
  process.stdout.write(JSON.stringify(report) + '\n')
  manager.close()
  disco.close()
  await shared.close()
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main(process.argv.slice(2))
