import { WarrenError } from '@warren/protocol'
import { DEFAULT_PATH_TIMINGS, type PathTimings } from './path-manager.js'

/**
 * PATH_TIMINGS_ENV names the environment variable that shortens a daemon's path timings
 * for tests: a JSON object of PathTimings fields in ms, say `{"udpRelayIdleMs":10000}`, so
 * a test sees in seconds what a user sees in minutes. Not for production: the defaults
 * are what the NAT facts and the relay's costs call for.
 */
export const PATH_TIMINGS_ENV = 'WARREN_TEST_PATH_TIMINGS'

/**
 * pathTimingsFromEnv reads PATH_TIMINGS_ENV from `env` (undefined when unset or empty). A
 * value that is not such an object, names a field PathTimings does not have, or gives a
 * field anything but a positive number of ms throws, naming the field.
 */
export function pathTimingsFromEnv (env: Record<string, string | undefined>): Partial<PathTimings> | undefined {
  const text = env[PATH_TIMINGS_ENV]
  if (text === undefined || text.trim() === '') return undefined
  const bad = (what: string): WarrenError => new WarrenError('usage', `$${PATH_TIMINGS_ENV}: ${what}`, { field: PATH_TIMINGS_ENV })
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (e) {
    throw bad(`not JSON (${(e as Error).message}); give an object such as {"udpRelayIdleMs":10000}`)
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw bad('give a JSON object such as {"udpRelayIdleMs":10000}')
  const known = Object.keys(DEFAULT_PATH_TIMINGS)
  const out: Partial<PathTimings> = {}
  for (const [key, value] of Object.entries(parsed)) {
    if (!known.includes(key)) throw bad(`'${key}' is not a path timing; use ${known.join(', ')}`)
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) throw bad(`${key} must be a positive number of ms, not ${JSON.stringify(value)}`)
    out[key as keyof PathTimings] = value
  }
  return out
}
