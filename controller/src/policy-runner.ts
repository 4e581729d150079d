import { Worker } from 'node:worker_threads'
import { WarrenError, createSerialQueue } from '@warren/protocol'
import type { PolicyJob, PolicyJobResult } from './policy-jobs.js'
import type { PolicyWorkerAnswer, PolicyWorkerRequest } from './policy-worker.js'

/** PolicyLimits bound one policy job: the worker's heap and the wall time of the job. */
export interface PolicyLimits {
  /** maxMemoryMb is the worker's old-generation heap limit (default 256) */
  maxMemoryMb?: number
  /** timeoutMs is how long one job may run before the worker is stopped (default 10,000) */
  timeoutMs?: number
}

/**
 * PolicyRunner runs policy jobs one at a time in a worker thread with a heap limit and a
 * time bound. A job that exceeds either ends with a 422 `policy_too_complex` and the
 * worker is replaced; the thread serving requests never does the work, so other requests
 * are answered meanwhile.
 */
export interface PolicyRunner {
  run: <J extends PolicyJob>(job: J) => Promise<PolicyJobResult<J>>
  close: () => Promise<void>
}

export const DEFAULT_POLICY_MEMORY_MB = 256
export const DEFAULT_POLICY_TIMEOUT_MS = 10_000

export function createPolicyRunner (limits: PolicyLimits = {}): PolicyRunner {
  const maxMemoryMb = limits.maxMemoryMb ?? DEFAULT_POLICY_MEMORY_MB
  const timeoutMs = limits.timeoutMs ?? DEFAULT_POLICY_TIMEOUT_MS
  const queue = createSerialQueue()
  let worker: Worker | undefined
  let nextId = 1
  let closed = false

  const tooComplex = (what: string): WarrenError => new WarrenError('policy_too_complex',
    `the policy ${what} and was stopped; nothing changed. Make it smaller: fewer rules, or groups in place of long user lists`, { status: 422 })

  /**
   * exchange waits for the worker's answer that `accept` takes, failing when the worker
   * dies or (with a deadline) takes too long; a worker that failed is dropped.
   */
  const exchange = async (w: Worker, accept: (a: PolicyWorkerAnswer) => boolean, deadlineMs?: number): Promise<PolicyWorkerAnswer> =>
    await new Promise((resolve, reject) => {
      const fail = (e: WarrenError): void => {
        cleanup()
        if (worker === w) worker = undefined
        void w.terminate()
        reject(e)
      }
      const timer = deadlineMs === undefined ? undefined : setTimeout(() => { fail(tooComplex(`took longer than ${deadlineMs / 1000} s to process`)) }, deadlineMs)
      const onMessage = (a: PolicyWorkerAnswer): void => { if (accept(a)) { cleanup(); resolve(a) } }
      const onError = (e: Error & { code?: string }): void => {
        fail(e.code === 'ERR_WORKER_OUT_OF_MEMORY'
          ? tooComplex(`needs more than ${maxMemoryMb} MB to process`)
          : new WarrenError('internal', `policy worker failed: ${e.message}`, { status: 500 }))
      }
      const onExit = (): void => {
        fail(closed
          ? new WarrenError('policy_unavailable', 'the controller is shutting down', { status: 503 })
          : new WarrenError('internal', 'policy worker stopped unexpectedly', { status: 500 }))
      }
      const cleanup = (): void => {
        clearTimeout(timer)
        w.off('message', onMessage)
        w.off('error', onError)
        w.off('exit', onExit)
      }
      w.on('message', onMessage)
      w.on('error', onError)
      w.on('exit', onExit)
    })

  /** ready gives a started worker; its start-up does not count against a job's time. */
  const ready = async (): Promise<Worker> => {
    if (worker !== undefined) return worker
    // No execArgv: loaders and flags of the parent (a test runner's, say) are not the policy's.
    const w = new Worker(new URL('./policy-worker.js', import.meta.url), { execArgv: [], resourceLimits: { maxOldGenerationSizeMb: maxMemoryMb } })
    worker = w
    await exchange(w, a => 'ready' in a)
    return w
  }

  /** runOne sends one job and settles on its answer, the worker's death, or the deadline. */
  const runOne = async (job: PolicyJob): Promise<unknown> => {
    if (closed) throw new WarrenError('policy_unavailable', 'the controller is shutting down', { status: 503 })
    const w = await ready()
    const id = nextId++
    w.ref()
    try {
      const answer = exchange(w, a => 'id' in a && a.id === id, timeoutMs)
      w.postMessage({ id, job } satisfies PolicyWorkerRequest)
      const a = await answer as Exclude<PolicyWorkerAnswer, { ready: true }>
      if (a.ok) return a.result
      throw new WarrenError(a.error.code, a.error.message, { status: a.error.status, ...(a.error.field !== undefined ? { field: a.error.field } : {}) })
    } finally {
      w.unref()
    }
  }

  return {
    run: async job => await queue.run(async () => await runOne(job)) as PolicyJobResult<typeof job>,
    async close () {
      closed = true
      const w = worker
      worker = undefined
      await w?.terminate()
      await queue.idle()
    }
  }
}
