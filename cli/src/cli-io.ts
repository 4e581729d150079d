import { AsyncLocalStorage } from 'node:async_hooks'

/**
 * CliIo is where one run of the CLI reads and writes: the `warren` executable passes the
 * process's own streams, tests and embedders pass their own. `env` is the environment the
 * run's options read (WARREN_SOCKET, WARREN_CONTROLLER, ...); `stdin` is what
 * `policy set -` reads.
 */
export interface CliIo {
  stdout: NodeJS.WritableStream
  stderr: NodeJS.WritableStream
  stdin?: NodeJS.ReadableStream
  env?: Record<string, string | undefined>
}

/** ResolvedCliIo is a CliIo with every part filled in. */
export type ResolvedCliIo = Required<CliIo>

/** processIo is the process's own output streams (stdin and env are filled in by resolveIo). */
export function processIo (): CliIo {
  return { stdout: process.stdout, stderr: process.stderr }
}

/**
 * resolveIo fills what `io` leaves out from the process. Standard input is looked up only
 * when read, because opening it can keep a finished process waiting.
 */
export function resolveIo (io: CliIo): ResolvedCliIo {
  return {
    stdout: io.stdout,
    stderr: io.stderr,
    env: io.env ?? process.env,
    get stdin () { return io.stdin ?? process.stdin }
  }
}

// The run a piece of command code belongs to, so that print helpers deep in a verb file
// write to that run's streams even while several runs share one process.
const current = new AsyncLocalStorage<ResolvedCliIo>()

/** withCliIo runs `fn` (and everything it awaits) with `io` as the current run's streams. */
export async function withCliIo<T> (io: ResolvedCliIo, fn: () => Promise<T>): Promise<T> {
  return await current.run(io, fn)
}

/** cliIo is the current run's streams, or the process's outside any run. */
export function cliIo (): ResolvedCliIo {
  return current.getStore() ?? resolveIo(processIo())
}
