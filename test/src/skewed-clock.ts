import { fileURLToPath, pathToFileURL } from 'node:url'

/**
 * skewed-clock, preloaded into a process with `node --import`, sets that process's wall
 * clock (`Date.now()`, `new Date()`) off by $WARREN_TEST_CLOCK_OFFSET_MS, as a host whose
 * clock is wrong would have it. Network namespaces share the system clock, so this is how
 * a test gives one daemon a clock of its own. Monotonic time (`performance.now()`, timers)
 * is left alone, as a wrong system clock leaves it.
 */

/** CLOCK_OFFSET_ENV holds the offset in ms (negative: behind). */
export const CLOCK_OFFSET_ENV = 'WARREN_TEST_CLOCK_OFFSET_MS'

/** skewedClockEnv is the environment that starts a Node process with its clock `offsetMs` off. */
export function skewedClockEnv (offsetMs: number): Record<string, string> {
  const self = fileURLToPath(import.meta.url).replace(/src\/skewed-clock\.ts$/, 'dist/src/skewed-clock.js')
  return { NODE_OPTIONS: `--import ${pathToFileURL(self).href}`, [CLOCK_OFFSET_ENV]: String(offsetMs) }
}

const offset = Number(process.env[CLOCK_OFFSET_ENV] ?? '0')
if (!Number.isFinite(offset)) throw new Error(`$${CLOCK_OFFSET_ENV} must be a number of ms, not '${process.env[CLOCK_OFFSET_ENV]}'`)
if (offset !== 0) {
  const SystemDate = Date
  class SkewedDate extends SystemDate {
    constructor (...args: unknown[]) {
      if (args.length === 0) super(SystemDate.now() + offset)
      else super(...(args as [number]))
    }

    static override now (): number {
      return SystemDate.now() + offset
    }
  }
  globalThis.Date = SkewedDate as DateConstructor
}
