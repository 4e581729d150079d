import { WarrenError } from './errors.js'

/**
 * SerialQueue runs async jobs one at a time, in the order they were queued: the one
 * helper for "a check and the write that depends on it must not interleave" (state
 * changes, applies to the system, writes of one file). A failed job does not stop the
 * ones after it; its error goes to its own caller.
 */
export interface SerialQueue {
  run: <T>(job: () => Promise<T> | T) => Promise<T>
  /** idle resolves once every job queued so far has finished */
  idle: () => Promise<void>
}

export function createSerialQueue (): SerialQueue {
  let tail: Promise<unknown> = Promise.resolve()
  return {
    run<T> (job: () => Promise<T> | T): Promise<T> {
      const result = tail.then(job)
      tail = result.then(() => undefined, () => undefined)
      return result
    },
    async idle () { await tail }
  }
}

/**
 * parseHostPort reads `host:port`, `[v6]:port`, or `:port` (host empty, the caller picks
 * its default). `what` names the input in the error, for example `--listen`.
 */
export function parseHostPort (text: string, what: string): { host: string, port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text.trim())
  const port = m === null ? NaN : Number(m[3])
  if (m === null || port > 65535) {
    throw new WarrenError('bad_host_port', `${what} '${text}' must be HOST:PORT, [IPv6]:PORT or :PORT (for example 0.0.0.0:8443)`, { field: what.replace(/^-+/, '') })
  }
  return { host: m[1] ?? m[2]!, port }
}

/** formatHostPort writes host and port back, with brackets around an IPv6 host. */
export function formatHostPort (host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`
}

/**
 * isKeyExpired is the one key-expiry check: a key (a node key, an auth or API key) with
 * an expiry time at or before `now` is expired; one without an expiry never is.
 */
export function isKeyExpired (expiry: string | undefined, now: number = Date.now()): boolean {
  return expiry !== undefined && Date.parse(expiry) <= now
}

/**
 * LOG_REDACT_PATHS are the pino paths of every field that can carry a secret (auth and
 * API keys, private keys, the Authorization header); every Warren logger redacts them.
 */
export const LOG_REDACT_PATHS: readonly string[] = [
  'req.headers.authorization', 'headers.authorization', 'authorization',
  'authKey', '*.authKey', 'apiKey', '*.apiKey', 'key', '*.key',
  'privateKey', '*.privateKey', 'secretKey', '*.secretKey', 'secret', '*.secret'
]
