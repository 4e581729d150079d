import { timingSafeEqual } from 'node:crypto'
import { WarrenError, hashSecret, parseDuration } from '@warren/protocol'

const MAX_KEY_LIFETIME_MS = 100 * 365 * 86_400_000

/** keyExpiryAfter turns a key lifetime such as `90d` into its expiry time from `now`. */
export function keyExpiryAfter (duration: string, field: string, now: number): string {
  const ms = parseDuration(duration, field)
  if (ms <= 0) throw new WarrenError('bad_duration', `${field} must be longer than 0 (for example 90d)`, { field })
  if (ms > MAX_KEY_LIFETIME_MS) throw new WarrenError('bad_duration', `${field} must be at most 100 years`, { field })
  return new Date(now + ms).toISOString()
}

/** secretMatches compares a presented secret with a stored hash in constant time. */
export function secretMatches (secretHash: string, secret: string): boolean {
  const x = Buffer.from(secretHash, 'hex')
  const y = Buffer.from(hashSecret(secret), 'hex')
  return x.length === y.length && timingSafeEqual(x, y)
}
