import { WarrenError } from '@warren/protocol'

/** MAX_JSON_DEPTH bounds how deep arrays and objects may nest in a request body; no API request needs more than a few levels. */
export const MAX_JSON_DEPTH = 64

/** Keys that name prototype machinery: a body that carries them is refused by name rather than ignored. */
const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor'])

/**
 * parseJsonBody reads a request body as JSON: empty text is "no body"; bad JSON, nesting
 * deeper than MAX_JSON_DEPTH, and `__proto__` or `constructor` keys are 400s that say
 * what is wrong and where, so that no later step (validation, handlers, serialisation)
 * sees deep or prototype-shaped input.
 */
export function parseJsonBody (text: string): unknown {
  if (text.trim() === '') return undefined
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (e) {
    throw new WarrenError('invalid_json', `request body is not valid JSON: ${(e as Error).message}`)
  }
  checkJsonValue(value, 'body', 1)
  return value
}

function checkJsonValue (value: unknown, path: string, depth: number): void {
  if (typeof value !== 'object' || value === null) return
  if (depth > MAX_JSON_DEPTH) {
    throw new WarrenError('invalid_json', `request body nests arrays or objects more than ${MAX_JSON_DEPTH} levels deep; no request needs that`, { field: 'body' })
  }
  if (Array.isArray(value)) {
    value.forEach((item, i) => { checkJsonValue(item, `${path}/${i}`, depth + 1) })
    return
  }
  for (const [key, item] of Object.entries(value)) {
    const field = `${path}/${key}`
    if (FORBIDDEN_KEYS.has(key)) throw new WarrenError('invalid_input', `${field}: the key '${key}' is not allowed in a request; remove it`, { field })
    checkJsonValue(item, field, depth + 1)
  }
}
