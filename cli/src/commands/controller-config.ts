import { readFile } from 'node:fs/promises'
import { InvalidArgumentError, type Command, type Option } from 'commander'
import { getNodeValue, parseTree, printParseErrorCode, type Node as JsonNode, type ParseError } from 'jsonc-parser'
import { WarrenError } from '@warren/protocol'

/** Keys the config file refuses with a pointer to what to write instead. */
const REFUSED: Record<string, string> = {
  oidcClientSecret: 'secrets stay out of the config file: put the client secret in a file of its own (mode 0600) and name that file with "oidcClientSecretFile"',
  config: 'a config file cannot name another one; remove this key'
}

/** lineColumn turns an offset in `text` into a 1-based `line:column`. */
function lineColumn (text: string, offset: number): string {
  const before = text.slice(0, offset).split('\n')
  return `${before.length}:${before[before.length - 1]!.length + 1}`
}

/** takesNoValue is true for flags like --no-relay, which a config file sets with true or false. */
const takesNoValue = (option: Option): boolean => !option.required && !option.optional

/** configValue turns one JSON value into the string or boolean commander would have given for `option`. */
function configValue (option: Option, value: unknown): string | boolean | undefined {
  if (takesNoValue(option)) return typeof value === 'boolean' ? value : undefined
  if (typeof value === 'string') return value
  if (typeof value === 'number' && Number.isFinite(value)) return String(value)
  if (option.flags.includes('<list>') && Array.isArray(value) && value.every(v => typeof v === 'string')) return value.join(',')
  return undefined
}

/** expected says what JSON a key takes, for errors. */
function expected (option: Option): string {
  if (takesNoValue(option)) return 'true or false'
  return option.flags.includes('<list>') ? 'a string or a list of strings, like ["a", "b"]' : 'a string'
}

/**
 * applyConfigFile reads `controller serve`'s HuJSON config file (JSON with comments and
 * trailing commas) and sets each option it names that the command line did not give.
 * Its keys are the long flags in camelCase, as commander names them ("stateDir",
 * "oidcAllowedGroups", "relay": false for --no-relay). A missing or unreadable file, a
 * syntax error, an unknown key or a wrong type throws before any option is set, naming
 * the file, the place and the fix.
 */
export async function applyConfigFile (cmd: Command, file: string): Promise<void> {
  const bad = (where: string, what: string, field = 'config'): WarrenError => new WarrenError('invalid_input', `config file ${file}${where}: ${what}`, { field })
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    const why = code === 'ENOENT' ? 'does not exist; check the path given to --config' : code === 'EACCES' ? 'cannot be read (permission denied); run as a user who can read it' : code === 'EISDIR' ? 'is a directory; give the path of the file' : `cannot be read (${String(code ?? e)})`
    throw new WarrenError('invalid_input', `config file ${file} ${why}`, { field: 'config' })
  }
  const errors: ParseError[] = []
  const root = parseTree(text, errors, { allowTrailingComma: true })
  if (errors.length > 0) throw bad(`:${lineColumn(text, errors[0]!.offset)}`, `${printParseErrorCode(errors[0]!.error)}; the file is JSON with comments, like {"listen": "0.0.0.0:8443"}`)
  if (root?.type !== 'object') throw bad('', 'must hold one JSON object, like {"listen": "0.0.0.0:8443", "stateDir": "/var/lib/warren"}')

  const options = new Map(cmd.options.filter(o => o.long !== undefined && o.attributeName() !== 'config').map(o => [o.attributeName(), o]))
  const values = new Map<Option, unknown>()
  for (const prop of root.children ?? []) {
    const [keyNode, valueNode] = prop.children as [JsonNode, JsonNode]
    const key = String(keyNode.value)
    const at = `:${lineColumn(text, keyNode.offset)}`
    const option = options.get(key)
    if (option === undefined) {
      const { policy } = await import('@warren/controller')
      const negated = /^no[A-Z]/.test(key) ? options.get(key[2]!.toLowerCase() + key.slice(3)) : undefined
      const hint = REFUSED[key] ?? (negated?.negate === true ? `write "${negated.attributeName()}": false` : policy.didYouMean(key, options.keys()) ?? `the keys are the long flags of 'warren controller serve --help' in camelCase, like "stateDir"`)
      throw bad(at, `unknown key "${key}"; ${hint}`, key)
    }
    const raw: unknown = getNodeValue(valueNode)
    const value = configValue(option, raw)
    if (value === undefined) throw bad(at, `"${key}" must be ${expected(option)}, not ${JSON.stringify(raw)}`, key)
    try {
      values.set(option, typeof value === 'string' && option.parseArg !== undefined ? option.parseArg(value, undefined) : value)
    } catch (e) {
      if (e instanceof InvalidArgumentError) throw bad(at, `"${key}" ${JSON.stringify(value)} is not valid: ${e.message}`, key)
      throw e
    }
  }
  for (const [option, value] of values) {
    const name = option.attributeName()
    const source = cmd.getOptionValueSource(name)
    if (source !== 'cli' && source !== 'env') cmd.setOptionValueWithSource(name, value, 'config')
  }
}
