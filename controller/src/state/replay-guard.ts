import { createHash } from 'node:crypto'

/**
 * ReplayGuard remembers the registrations the controller accepted while their timestamp
 * is still inside the clock-skew window, so the same signed request cannot be sent again
 * (for example to bring back a node an admin has just expired). It keys on a hash of the
 * signed payload, not the signature, so a re-encoded signature is still the same request.
 * Entries are dropped once their timestamp is out of the window: the skew check refuses
 * such a request anyway, which keeps memory bounded by the registrations of one window.
 */
export interface ReplayGuard {
  seen: (payload: string) => boolean
  /** remember notes an accepted payload signed at `timestamp` (ms) */
  remember: (payload: string, timestamp: number) => void
  readonly size: number
}

export function createReplayGuard (windowMs: number, now: () => number): ReplayGuard {
  // payload hash -> time after which the skew check refuses it anyway
  const until = new Map<string, number>()
  let nextSweep = 0
  const hash = (payload: string): string => createHash('sha256').update(payload, 'utf8').digest('base64')

  function sweep (t: number): void {
    // A full pass at most a few times per window keeps the cost per registration constant.
    if (t < nextSweep) return
    nextSweep = t + Math.max(1000, windowMs / 4)
    for (const [key, expiry] of until) if (expiry < t) until.delete(key)
  }

  return {
    seen (payload) {
      const expiry = until.get(hash(payload))
      return expiry !== undefined && expiry >= now()
    },
    remember (payload, timestamp) {
      const t = now()
      sweep(t)
      until.set(hash(payload), timestamp + windowMs)
    },
    get size () { return until.size }
  }
}
