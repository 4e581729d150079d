/**
 * TokenBuckets rate-limits by key: each key may spend `burst` at once and earns `perSecond`
 * back. Keys that are full again are forgotten on sweep, so memory follows active keys.
 */
export interface TokenBuckets {
  take: (key: string, now?: number) => boolean
  sweep: (now?: number) => void
  size: () => number
}

export function createTokenBuckets (burst: number, perSecond: number): TokenBuckets {
  const buckets = new Map<string, { tokens: number, at: number }>()
  const level = (b: { tokens: number, at: number }, now: number): number => Math.min(burst, b.tokens + (now - b.at) / 1000 * perSecond)
  return {
    take (key, now = Date.now()) {
      const b = buckets.get(key) ?? { tokens: burst, at: now }
      b.tokens = level(b, now)
      b.at = now
      buckets.set(key, b)
      if (b.tokens < 1) return false
      b.tokens -= 1
      return true
    },
    sweep (now = Date.now()) {
      for (const [k, b] of buckets) if (level(b, now) >= burst) buckets.delete(k)
    },
    size: () => buckets.size
  }
}
