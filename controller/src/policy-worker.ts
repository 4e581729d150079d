import { parentPort } from 'node:worker_threads'
import { isWarrenError } from '@warren/protocol'
import { runPolicyJob, type PolicyJob } from './policy-jobs.js'

/**
 * The policy worker thread: it runs one policy job per message and answers with the
 * result or the error, so a policy that is too big or too complex exhausts this thread's
 * memory or time, not the controller's. Started by createPolicyRunner.
 */
export interface PolicyWorkerRequest { id: number, job: PolicyJob }
export type PolicyWorkerAnswer =
  | { ready: true }
  | { id: number, ok: true, result: unknown }
  | { id: number, ok: false, error: { code: string, message: string, status: number, field?: string } }

parentPort?.on('message', (req: PolicyWorkerRequest) => {
  let answer: PolicyWorkerAnswer
  try {
    answer = { id: req.id, ok: true, result: runPolicyJob(req.job) }
  } catch (e) {
    const error = isWarrenError(e)
      ? { code: e.code, message: e.message, status: e.status, ...(e.field !== undefined ? { field: e.field } : {}) }
      : { code: 'internal', message: `policy worker: ${(e as Error).message}`, status: 500 }
    answer = { id: req.id, ok: false, error }
  }
  parentPort!.postMessage(answer)
})

parentPort?.postMessage({ ready: true } satisfies PolicyWorkerAnswer)
