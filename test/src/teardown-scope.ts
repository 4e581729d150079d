import type { TestWithResult } from './mesh.js'

/**
 * TeardownScope stands in for a tap test in programs that are not tests (the demo,
 * benchmarks): it collects teardowns and runs them, newest first, on cleanup().
 */
export interface TeardownScope {
  /** t is what createMesh and createTopology take */
  t: TestWithResult
  /** fail marks the run failed, so the mesh prints what its processes said */
  fail: () => void
  /** cleanup runs every teardown, newest first; a failing one is reported and the rest still run */
  cleanup: () => Promise<void>
}

/** createTeardownScope returns a scope whose comments go to `comment` (default console.log). */
export function createTeardownScope (comment: (...m: unknown[]) => void = console.log): TeardownScope {
  const teardowns: Array<() => unknown> = []
  let failed = false
  return {
    t: {
      teardown: fn => { teardowns.push(fn) },
      passing: () => !failed,
      comment
    },
    fail: () => { failed = true },
    async cleanup () {
      while (teardowns.length > 0) {
        try { await teardowns.pop()!() } catch (e) { console.error(`cleanup: ${(e as Error).message}`) }
      }
    }
  }
}
