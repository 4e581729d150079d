/**
 * WarrenError is the one error class that crosses package boundaries. `code` is stable
 * and machine-readable (it is also the `error.code` of API responses); `message` says
 * what is wrong, where, and how to fix it.
 */
export class WarrenError extends Error {
  override readonly name = 'WarrenError'
  readonly code: string
  readonly status: number
  readonly field?: string

  constructor (code: string, message: string, opts: { status?: number, field?: string, cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause })
    this.code = code
    this.status = opts.status ?? 400
    if (opts.field !== undefined) this.field = opts.field
  }
}

/** isWarrenError narrows an unknown thrown value. */
export function isWarrenError (e: unknown): e is WarrenError {
  return e instanceof Error && (e as WarrenError).name === 'WarrenError' && typeof (e as WarrenError).code === 'string'
}
