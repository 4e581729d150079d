/**
 * Backoff yields reconnect delays that double from `minMs` up to `maxMs`, each with
 * full jitter in its upper half, so that a controller restart is not met by every node
 * reconnecting in the same millisecond.
 */
export interface Backoff {
  /** next returns the delay before the next attempt and advances the schedule */
  next(): number
  /** reset starts over at `minMs`; call it once a connection works */
  reset(): void
}

export interface BackoffInit {
  minMs?: number
  maxMs?: number
  random?: () => number
}

/** createBackoff makes a jittered exponential backoff (default 0.5 s to 30 s). */
export function createBackoff (init: BackoffInit = {}): Backoff {
  const min = init.minMs ?? 500
  const max = init.maxMs ?? 30_000
  const random = init.random ?? Math.random
  let attempt = 0
  return {
    next () {
      const ceiling = Math.min(max, min * 2 ** attempt)
      attempt = Math.min(attempt + 1, 30)
      return Math.round(ceiling / 2 + random() * ceiling / 2)
    },
    reset () { attempt = 0 }
  }
}
