/**
 * Mutex serializes async critical sections in this process. The controller runs every
 * state change through one, so that a check ("is this single-use key still unused?")
 * and the write that depends on it cannot interleave with another request's.
 */
export interface Mutex {
  /** runExclusive waits for the previous holder, then runs fn; fn's errors are passed on. */
  runExclusive: <T>(fn: () => Promise<T> | T) => Promise<T>
}

export function createMutex (): Mutex {
  let tail: Promise<unknown> = Promise.resolve()
  return {
    runExclusive<T> (fn: () => Promise<T> | T): Promise<T> {
      const run = tail.then(fn)
      tail = run.then(() => undefined, () => undefined)
      return run
    }
  }
}
