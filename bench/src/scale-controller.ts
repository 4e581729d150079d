/**
 * scale-controller runs the controller for the scale benchmark in a process of its own,
 * so that its RSS and CPU time can be read from /proc. It is the real controller
 * (startController: TLS, LevelDB store, registration, admin socket) with the map
 * service mounted and the policy engine compiled from BENCH_POLICY (HuJSON; default
 * allow-all). Rate limits are off, so registrations are not throttled.
 */
import { readFile } from 'node:fs/promises'
import { appendFileSync } from 'node:fs'
import { writeHeapSnapshot } from 'node:v8'
import { join } from 'node:path'
import * as controller from '@warren/controller'
import type { Histogram } from 'prom-client'
import { serveRpc, openFileLimit, type ControllerReady, type MapServiceFigures } from './scale-shared.js'

interface MapService { stats: () => { messages: number, bytes: number, changes: number, fanout: number, connected: number }, metrics: { changeSeconds: Histogram } }
interface MapModule { mapServerHook: (opts: { coalesceMs?: number, policy?: unknown, onStart?: (s: MapService) => void }) => controller.ServerHook }
interface PolicyModule {
  parsePolicy: (text: string, opts?: { users?: Array<{ name: string }> }) => { policy?: unknown, errors: Array<{ message: string }> }
  createPolicyEngine: (policy: unknown, users: Array<{ name: string }>) => unknown
}

/** fromController loads a controller module that its package index may not export yet. */
async function fromController<T> (name: string, rel: string): Promise<T> {
  if (name in controller) return controller as unknown as T
  return await import(new URL(rel, import.meta.resolve('@warren/controller')).href) as T
}

const stateDir = process.env.BENCH_STATE_DIR!
const policyText = process.env.BENCH_POLICY
const coalesceMs = Number(process.env.BENCH_COALESCE_MS ?? '30')

const { mapServerHook } = await fromController<MapModule>('mapServerHook', './map/index.js')
const { parsePolicy, createPolicyEngine } = await fromController<PolicyModule>('createPolicyEngine', './policy/index.js')

const users = [{ name: 'bench' }]
let policy: unknown
if (policyText !== undefined) {
  const parsed = parsePolicy(policyText, { users })
  if (parsed.policy === undefined) throw new Error(`bench policy: ${parsed.errors.map(e => e.message).join('; ')}`)
  policy = createPolicyEngine(parsed.policy, users)
}

// BENCH_MEMORY_LOG names a file that gets a line of process.memoryUsage() (MiB) each second, to see where a peak comes from.
const memoryLog = process.env.BENCH_MEMORY_LOG
if (memoryLog !== undefined) {
  const started = Date.now()
  setInterval(() => {
    const m = process.memoryUsage()
    const mib = (x: number): number => Math.round(x / 1048576)
    appendFileSync(memoryLog, `${((Date.now() - started) / 1000).toFixed(0)}s rss ${mib(m.rss)} heapUsed ${mib(m.heapUsed)} heapTotal ${mib(m.heapTotal)} external ${mib(m.external)} arrayBuffers ${mib(m.arrayBuffers)} connected ${service?.stats().connected ?? 0}\n`)
  }, 1000).unref()
}

let service: MapService | undefined
let snapshotTaken = false
const c = await controller.startController({
  stateDir,
  listen: '127.0.0.1:0',
  logger: false,
  rateLimit: false,
  map: false,
  onServer: mapServerHook({ coalesceMs, ...(policy !== undefined ? { policy } : {}), onStart: s => { service = s } })
})

serveRpc(async req => {
  if (req.op === 'stats') {
    // BENCH_HEAP_SNAPSHOT names a file for a heap snapshot at the first stats request (after sync).
    if (process.env.BENCH_HEAP_SNAPSHOT !== undefined && !snapshotTaken) {
      snapshotTaken = true
      writeHeapSnapshot(process.env.BENCH_HEAP_SNAPSHOT)
    }
    const s = service!.stats()
    const h = await service!.metrics.changeSeconds.get()
    const sum = h.values.find(v => v.metricName === 'warren_map_change_seconds_sum')?.value ?? 0
    const mem = process.memoryUsage()
    const mib = (x: number): number => Math.round(x / 1048576)
    const figures: MapServiceFigures = {
      messages: s.messages, bytes: s.bytes, changes: s.changes, fanout: s.fanout, changeSeconds: sum, connected: s.connected,
      memory: { heapUsedMiB: mib(mem.heapUsed), heapTotalMiB: mib(mem.heapTotal), externalMiB: mib(mem.external), arrayBuffersMiB: mib(mem.arrayBuffers) }
    }
    return figures
  }
  if (req.op === 'close') {
    await c.close()
    setImmediate(() => process.exit(0))
    return {}
  }
  throw new Error(`unknown request ${req.op}`)
})

const ready: ControllerReady = {
  op: 'ready',
  url: c.url,
  adminSocket: c.adminSocket,
  controllerKey: c.state.controllerKey.publicKey,
  fdLimit: openFileLimit(),
  ca: await readFile(join(stateDir, controller.CERT_FILE), 'utf8')
}
process.send!(ready)
