import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler'
import type { TSchema, Static } from '@sinclair/typebox'
import { WarrenError } from './errors.js'
import { escapeUnsafeText } from './text.js'

const cache = new WeakMap<TSchema, TypeCheck<TSchema>>()

function compiled<T extends TSchema> (schema: T): TypeCheck<T> {
  let c = cache.get(schema)
  if (c === undefined) {
    c = TypeCompiler.Compile(schema)
    cache.set(schema, c)
  }
  return c as TypeCheck<T>
}

/**
 * validate checks untrusted input against a wire schema and returns it typed, or throws
 * a WarrenError that names the first wrong field (`/peers/3/wgKey: ...`).
 */
export function validate<T extends TSchema> (schema: T, value: unknown, what = 'message'): Static<T> {
  const c = compiled(schema)
  if (c.Check(value)) return value
  const first = c.Errors(value).First()
  const path = first?.path === undefined || first.path === '' ? '(top level)' : first.path
  const why = first === undefined ? 'does not match the schema' : describe(first.message, first.schema, first.value)
  throw new WarrenError('invalid_input', `${what}: ${path}: ${why}`, { field: path })
}

function describe (message: string, schema: TSchema, value: unknown): string {
  if (value === undefined && /Expected required property/.test(message)) return 'is required but missing'
  if (/Unexpected property/.test(message)) return 'is not a known field; remove it'
  if (schema.pattern !== undefined && typeof value === 'string') return `'${escapeUnsafeText(String(value).slice(0, 80))}' has the wrong form (${schema.description ?? `must match ${schema.pattern as string}`})`
  return message.toLowerCase()
}

/** parseJson parses text as JSON and validates it in one step. */
export function parseJson<T extends TSchema> (schema: T, text: string, what = 'message'): Static<T> {
  let v: unknown
  try { v = JSON.parse(text) } catch (e) {
    throw new WarrenError('invalid_json', `${what} is not valid JSON: ${(e as Error).message}`)
  }
  return validate(schema, v, what)
}
