/** StopSignal is a wait for SIGINT or SIGTERM that began before the program said it was ready. */
export interface StopSignal {
  /** received resolves with the first SIGINT or SIGTERM */
  received: Promise<NodeJS.Signals>
  /** dispose stops listening (for a start that failed) */
  dispose: () => void
}

/**
 * listenForStop starts listening for SIGINT and SIGTERM now. Servers call it before they
 * print that they are ready: whoever reads that line may signal at once, and a signal that
 * finds no listener yet gets Node's default action, which ends the process without its
 * orderly stop (and with no exit code).
 */
export function listenForStop (): StopSignal {
  let stop: (sig: NodeJS.Signals) => void = () => {}
  const dispose = (): void => {
    process.off('SIGINT', stop)
    process.off('SIGTERM', stop)
  }
  const received = new Promise<NodeJS.Signals>(resolve => {
    stop = sig => { dispose(); resolve(sig) }
  })
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
  return { received, dispose }
}
