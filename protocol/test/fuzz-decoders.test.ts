import t from 'tap'
import fc from 'fast-check'
import { Kind, type TSchema } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import * as messages from '../src/messages.js'
import {
  UNSAFE_TEXT_CHARS,
  validate, parseJson, isWarrenError, parseCredential, formatCredential, newCredential, normalizeFingerprint,
  displayFingerprint, isWireGuardKey, isMachineKey, wireGuardPublicKey, generateWireGuardKeyPair, generateMachineKeyPair,
  signMessage, verifyMessage, verifyWireGuardProof, wireGuardProof, base32, unbase32, fromBase64, toBase64,
  sanitizeHostname, isDnsLabel, checkNodeName, isTag, isDomain, parseDuration, parseHostPort, parseIpAddress, parseIpPrefix
} from '../src/index.js'

/**
 * Every decoder and validator in protocol fed random and mutated input: each returns a
 * value it vouches for or throws a WarrenError, never anything else, and never hangs.
 * The seed is fixed so a failure replays; WARREN_FUZZ_RUNS and WARREN_FUZZ_SEED explore further.
 */
const RUNS = { seed: Number(process.env.WARREN_FUZZ_SEED ?? 0x77a7), numRuns: Number(process.env.WARREN_FUZZ_RUNS ?? 1000) }

/** warrenErrorOr runs `fn`, returning its value, or undefined when it threw a WarrenError; anything else fails the property. */
function warrenErrorOr<T> (fn: () => T): T | undefined {
  try {
    return fn()
  } catch (e) {
    if (isWarrenError(e)) return undefined
    throw e
  }
}

// ---------- samples: one valid value per wire schema ----------

/** PATTERN_SAMPLES holds a valid string for each pattern the wire schemas use. */
const PATTERN_SAMPLES: Record<string, string> = {
  '^[A-Za-z0-9+/]{43}=$': generateWireGuardKeyPair().publicKey,
  '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$': 'db-1',
  '^tag:[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$': 'tag:Web',
  '^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$': 'alice',
  '^[^@\\s]+@[^@\\s]+$': 'alice@example.com',
  '^[A-Za-z0-9_-]+$': 'n0de_1',
  '^\\d+(s|m|h|d|w)?$': '24h',
  '^[0-9a-f]{64}$': 'ab'.repeat(32),
  [`^[^${UNSAFE_TEXT_CHARS}]*$`]: 'a plain note',
  [`^[^@\\s${UNSAFE_TEXT_CHARS}]+@[^@\\s${UNSAFE_TEXT_CHARS}]+$`]: 'alice@example.com'
}

/** sample builds a valid value of a schema; `variant` picks among the members of a union. */
function sample (schema: TSchema, variant = 0): unknown {
  switch (schema[Kind]) {
    case 'Object': return Object.fromEntries(Object.entries(schema.properties as Record<string, TSchema>).map(([k, s]) => [k, sample(s)]))
    case 'Array': return new Array(Math.max(1, schema.minItems ?? 0)).fill(0).map(() => sample(schema.items as TSchema))
    case 'Union': return sample((schema.anyOf as TSchema[])[variant % (schema.anyOf as TSchema[]).length]!)
    case 'Record': return { note: sample(Object.values(schema.patternProperties as Record<string, TSchema>)[0]!) }
    case 'Unknown': return 'x'
    case 'Literal': return schema.const
    case 'Boolean': return true
    case 'Integer': case 'Number': return schema.minimum ?? 1
    case 'String': {
      if (schema.pattern === undefined) return 'x'.repeat(Math.max(1, schema.minLength ?? 0))
      const s = PATTERN_SAMPLES[schema.pattern as string]
      if (s === undefined) throw new Error(`no sample for the pattern ${schema.pattern as string}: add one to PATTERN_SAMPLES`)
      return s
    }
    default: throw new Error(`no sample for a ${String(schema[Kind])} schema: teach sample() about it`)
  }
}

/** SCHEMAS is every wire schema messages.ts exports, with a valid sample of each union member. */
const SCHEMAS = (Object.entries(messages) as Array<[string, unknown]>)
  .filter((e): e is [string, TSchema] => typeof e[1] === 'object' && e[1] !== null && Kind in e[1])
  .flatMap(([name, schema]) => {
    const variants = schema[Kind] === 'Union' ? (schema.anyOf as TSchema[]).length : 1
    return Array.from({ length: variants }, (_, i) => ({ name, schema, valid: sample(schema, i) }))
  })

t.test('every wire schema has a valid sample', async t => {
  t.ok(SCHEMAS.length > 60, `${SCHEMAS.length} schemas and union members`)
  for (const { name, schema, valid } of SCHEMAS) t.ok(Value.Check(schema, valid), `${name}: ${JSON.stringify(valid).slice(0, 80)}`)
})

// ---------- mutations of JSON values ----------

type Json = null | boolean | number | string | Json[] | { [key: string]: Json }

/** ODD_KEYS are keys that reach into prototypes when a decoder is careless. */
const ODD_KEYS = ['__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'type', '']

const jsonMutation = fc.record({
  at: fc.nat(),
  op: fc.constantFrom('replace', 'delete', 'addKey', 'wrap', 'stringify', 'deepen'),
  value: fc.jsonValue({ maxDepth: 3 }) as fc.Arbitrary<Json>,
  key: fc.oneof(fc.constantFrom(...ODD_KEYS), fc.string({ maxLength: 12 }))
})
type JsonMutation = typeof jsonMutation extends fc.Arbitrary<infer M> ? M : never

/** nodesOf lists every value inside `v` (itself first) with the container and key that hold it. */
function nodesOf (v: Json, holder?: { parent: Json[] | Record<string, Json>, key: string | number }): Array<{ value: Json, holder?: { parent: Json[] | Record<string, Json>, key: string | number } }> {
  const out: Array<{ value: Json, holder?: { parent: Json[] | Record<string, Json>, key: string | number } }> = [{ value: v, ...(holder !== undefined ? { holder } : {}) }]
  if (Array.isArray(v)) v.forEach((x, i) => out.push(...nodesOf(x, { parent: v, key: i })))
  else if (v !== null && typeof v === 'object') for (const [k, x] of Object.entries(v)) out.push(...nodesOf(x, { parent: v, key: k }))
  return out
}

/** setOwn sets a key as an own, enumerable property, as JSON.parse does, even for `__proto__`. */
function setOwn (o: Record<string, Json>, key: string, value: Json): void {
  Object.defineProperty(o, key, { value, enumerable: true, writable: true, configurable: true })
}

/** mutate applies the mutations to a deep copy of `v`, each at one of its values. */
function mutate (v: unknown, steps: JsonMutation[]): Json {
  let root = JSON.parse(JSON.stringify(v)) as Json
  for (const m of steps) {
    const nodes = nodesOf(root)
    const { value, holder } = nodes[m.at % nodes.length]!
    const put = (x: Json): void => {
      if (holder === undefined) root = x
      else if (Array.isArray(holder.parent)) holder.parent[holder.key as number] = x
      else setOwn(holder.parent, String(holder.key), x)
    }
    if (m.op === 'replace') put(m.value)
    else if (m.op === 'delete' && holder !== undefined) {
      if (Array.isArray(holder.parent)) holder.parent.splice(holder.key as number, 1)
      else delete holder.parent[holder.key as string]
    } else if (m.op === 'addKey' && value !== null && typeof value === 'object' && !Array.isArray(value)) setOwn(value, m.key, m.value)
    else if (m.op === 'wrap') put([value])
    else if (m.op === 'stringify') put(JSON.stringify(value) ?? 'null')
    else if (m.op === 'deepen') {
      let deep: Json = value
      for (let i = 0; i < 200; i++) deep = [deep]
      put(deep)
    }
  }
  return root
}

/** checked validates and, when validate accepts, confirms the value really matches the schema. */
function checked (schema: TSchema, value: unknown): void {
  const out = warrenErrorOr(() => validate(schema, value, 'fuzz'))
  if (out !== undefined && !Value.Check(schema, out)) throw new Error(`validate accepted a value that does not match: ${JSON.stringify(out).slice(0, 200)}`)
}

const schemaCase = fc.constantFrom(...SCHEMAS)

t.test('validate: random JSON and random values are accepted only when they match, else a WarrenError', async t => {
  fc.assert(fc.property(schemaCase, fc.jsonValue({ maxDepth: 5 }), (c, value) => { checked(c.schema, value) }), RUNS)
  fc.assert(fc.property(schemaCase, fc.anything({ maxDepth: 3, withNullPrototype: true, withMap: true, withSet: true, withBigInt: true, withDate: true, withTypedArray: true, withSparseArray: true, withBoxedValues: true }),
    (c, value) => { checked(c.schema, value) }), RUNS)
  t.pass(`${2 * RUNS.numRuns} cases over ${SCHEMAS.length} schemas`)
})

t.test('validate: mutated valid messages are accepted only when they match, else a WarrenError naming the message', async t => {
  fc.assert(fc.property(schemaCase, fc.array(jsonMutation, { minLength: 1, maxLength: 4 }), (c, steps) => {
    const value = mutate(c.valid, steps)
    try {
      const out = validate(c.schema, value, c.name)
      if (!Value.Check(c.schema, out)) throw new Error(`validate accepted a value that does not match: ${JSON.stringify(out).slice(0, 200)}`)
    } catch (e) {
      if (!isWarrenError(e)) throw e
      if (e.code !== 'invalid_input' || !e.message.startsWith(`${c.name}: `)) throw new Error(`unexpected refusal: ${e.code} ${e.message}`)
    }
  }), RUNS)
  t.pass(`${RUNS.numRuns} mutated messages`)
})

t.test('validate: keys that reach into prototypes are refused by name', async t => {
  for (const { name, schema, valid } of SCHEMAS) {
    if (valid === null || typeof valid !== 'object' || Array.isArray(valid)) continue
    for (const key of ['__proto__', 'constructor', 'prototype']) {
      const value = JSON.parse(JSON.stringify(valid).replace(/^\{/, `{"${key}":{"x":1},`)) as unknown
      // A union names no single field: it says the value matches none of its members.
      const why = schema[Kind] === 'Union' ? /expected union value/ : new RegExp(`/${key}: is not a known field`)
      t.throws(() => validate(schema, value, name), { code: 'invalid_input', message: why }, `${name} with ${key}`)
    }
  }
})

t.test('parseJson: mangled text and deep nesting give a WarrenError', async t => {
  const text = fc.tuple(schemaCase, fc.array(fc.record({ at: fc.nat(), op: fc.constantFrom('set', 'cut', 'insert'), ch: fc.constantFrom('{', '}', '[', ']', '"', ',', ':', '\\', '\u0000', 'a', '1', '-', 'e', ' ') }), { minLength: 1, maxLength: 6 }))
    .map(([c, steps]) => {
      let s = JSON.stringify(c.valid)
      for (const m of steps) {
        const i = m.at % (s.length + 1)
        s = m.op === 'set' ? s.slice(0, i) + m.ch + s.slice(i + 1) : m.op === 'cut' ? s.slice(0, i) : s.slice(0, i) + m.ch + s.slice(i)
      }
      return { c, s }
    })
  fc.assert(fc.property(text, ({ c, s }) => { warrenErrorOr(() => parseJson(c.schema, s, c.name)) }), RUNS)
  fc.assert(fc.property(schemaCase, fc.string({ maxLength: 200 }), (c, s) => { warrenErrorOr(() => parseJson(c.schema, s)) }), RUNS)
  for (const depth of [1000, 100_000]) {
    for (const [open, close] of [['[', ']'], ['{"a":', '}']]) {
      const deep = open!.repeat(depth) + '1' + close!.repeat(depth)
      t.throws(() => parseJson(messages.Node, deep, 'node'), { code: 'invalid_input' }, `${depth} levels of ${open}`)
    }
  }
})

// ---------- credentials, keys, encodings, names ----------

/** hostile are strings a regular expression or a parser could stumble on: long runs with a twist at the end. */
const hostile = fc.oneof(
  fc.string({ maxLength: 120 }),
  fc.string({ unit: 'binary', maxLength: 60 }),
  fc.tuple(fc.constantFrom('a', '-', '.', ':', '[', '0', '9', '@', ' ', '=', 'A', 'wrnauth-', '00'), fc.integer({ min: 100, max: 20_000 }), fc.string({ maxLength: 3 }))
    .map(([c, n, tail]) => c.repeat(n) + tail)
)

/** mutatedText replaces, deletes or inserts characters of `base` from a small alphabet. */
function mutatedText (base: fc.Arbitrary<string>): fc.Arbitrary<string> {
  return fc.tuple(base, fc.array(fc.record({ at: fc.nat(), op: fc.constantFrom('set', 'cut', 'insert'), ch: fc.constantFrom('-', 'a', 'z', '2', '7', '8', '0', 'f', 'A', ':', '=', '+', '/', ' ', '\n') }), { minLength: 1, maxLength: 3 }))
    .map(([s, steps]) => {
      for (const m of steps) {
        const i = m.at % (s.length + 1)
        s = m.op === 'set' ? s.slice(0, i) + m.ch + s.slice(i + 1) : m.op === 'cut' ? s.slice(0, i) + s.slice(i + 1) : s.slice(0, i) + m.ch + s.slice(i)
      }
      return s
    })
}

const fingerprint = fc.uint8Array({ minLength: 32, maxLength: 32 }).map(b => Buffer.from(b).toString('hex'))
const credentialKey = fc.tuple(fc.constantFrom('auth' as const, 'api' as const), fc.option(fingerprint, { nil: undefined })).map(([kind, fp]) => ({ kind, key: newCredential(kind, fp).key }))

t.test('credentials: random and damaged keys give a WarrenError; good ones round-trip', async t => {
  fc.assert(fc.property(fc.oneof(hostile, mutatedText(credentialKey.map(c => c.key))), fc.constantFrom('auth' as const, 'api' as const), (s, kind) => {
    // A pin is read in either case, so a parsed key formats back in its canonical form.
    const parsed = warrenErrorOr(() => parseCredential(s, kind))
    if (parsed !== undefined && JSON.stringify(parseCredential(formatCredential(parsed), kind)) !== JSON.stringify(parsed)) throw new Error(`'${s}' does not survive formatting`)
  }), RUNS)
  fc.assert(fc.property(fc.anything(), kind => { warrenErrorOr(() => parseCredential(kind as string, 'auth')) }), RUNS)
  fc.assert(fc.property(credentialKey, ({ kind, key }) => formatCredential(parseCredential(key, kind)) === key), RUNS)
  fc.assert(fc.property(fc.oneof(hostile, mutatedText(fingerprint.map(displayFingerprint))), s => {
    const hex = warrenErrorOr(() => normalizeFingerprint(s))
    if (hex !== undefined && (!/^[0-9a-f]{64}$/.test(hex) || normalizeFingerprint(displayFingerprint(hex)) !== hex)) throw new Error(`'${s}' normalized to ${hex}`)
  }), RUNS)
  t.pass('credentials and fingerprints')
})

t.test('keys: random and damaged keys, signatures and proofs are refused, never thrown on', async t => {
  const wg = generateWireGuardKeyPair()
  const machine = generateMachineKeyPair()
  const signature = signMessage(machine.secretKey, 'fuzz', 'hello')
  const proof = wireGuardProof(wg.privateKey, generateWireGuardKeyPair().publicKey, 'fuzz', 'hello')
  const keyText = fc.oneof(hostile, mutatedText(fc.constantFrom(wg.publicKey, wg.privateKey, machine.publicKey, machine.secretKey, signature, proof)))
  fc.assert(fc.property(keyText, keyText, keyText, (a, b, c) => {
    if (typeof isWireGuardKey(a) !== 'boolean' || typeof isMachineKey(a) !== 'boolean') throw new Error('a key check did not answer yes or no')
    const pub = warrenErrorOr(() => wireGuardPublicKey(a))
    if (pub !== undefined && !isWireGuardKey(pub)) throw new Error(`'${a}' gave the public key '${pub}'`)
    warrenErrorOr(() => signMessage(a, 'fuzz', b))
    if (typeof verifyMessage(a, 'fuzz', 'hello', b) !== 'boolean') throw new Error('verifyMessage did not answer yes or no')
    if (typeof verifyWireGuardProof(a, b, 'fuzz', 'hello', c) !== 'boolean') throw new Error('verifyWireGuardProof did not answer yes or no')
    warrenErrorOr(() => wireGuardProof(a, b, 'fuzz', 'hello'))
  }), RUNS)
  fc.assert(fc.property(mutatedText(fc.constant(signature)), s => s === signature || !verifyMessage(machine.publicKey, 'fuzz', 'hello', s)), RUNS)
  t.ok(verifyMessage(machine.publicKey, 'fuzz', 'hello', signature), 'the undamaged signature still verifies')
})

t.test('encodings: random text decodes to bytes that encode back, or to null', async t => {
  fc.assert(fc.property(hostile, s => {
    const b32 = unbase32(s)
    if (b32 !== null && !(b32 instanceof Uint8Array)) throw new Error('unbase32 returned something else')
    const b64 = fromBase64(s)
    if (b64 !== null && toBase64(b64) !== s) throw new Error(`fromBase64 accepted the non-canonical '${s}'`)
  }), RUNS)
  fc.assert(fc.property(fc.uint8Array({ maxLength: 80 }), bytes => {
    const again = unbase32(base32(bytes))
    return again !== null && Buffer.from(again).equals(Buffer.from(bytes)) && Buffer.from(fromBase64(toBase64(bytes))!).equals(Buffer.from(bytes))
  }), RUNS)
  t.pass('base32 and base64')
})

t.test('names, durations and addresses: any text gives a value or a WarrenError', async t => {
  fc.assert(fc.property(hostile, s => {
    if (!isDnsLabel(sanitizeHostname(s))) throw new Error(`sanitizeHostname('${s.slice(0, 40)}') is not a DNS label`)
    const nameOk = warrenErrorOr(() => { checkNodeName(s); return true }) === true
    if (nameOk !== isDnsLabel(s)) throw new Error(`checkNodeName and isDnsLabel disagree on '${s.slice(0, 40)}'`)
    if (typeof isTag(s) !== 'boolean' || typeof isDomain(s) !== 'boolean') throw new Error('a name check did not answer yes or no')
    const ms = warrenErrorOr(() => parseDuration(s, 'fuzz'))
    if (ms !== undefined && !(ms >= 0)) throw new Error(`parseDuration('${s.slice(0, 40)}') is ${ms}`)
    const hp = warrenErrorOr(() => parseHostPort(s, '--listen'))
    if (hp !== undefined && !(Number.isInteger(hp.port) && hp.port >= 0 && hp.port <= 65535)) throw new Error(`parseHostPort('${s.slice(0, 40)}') gave port ${hp.port}`)
    const ip = parseIpAddress(s)
    if (ip !== undefined && ip.length !== (ip.family === 4 ? 32 : 128)) throw new Error(`parseIpAddress('${s.slice(0, 40)}') is a /${ip.length}`)
    const prefix = parseIpPrefix(s)
    if (prefix !== undefined && !(prefix.length >= 0 && prefix.length <= (prefix.family === 4 ? 32 : 128))) throw new Error(`parseIpPrefix('${s.slice(0, 40)}') is a /${prefix.length}`)
  }), RUNS)
  fc.assert(fc.property(mutatedText(fc.constantFrom('100.64.0.1', 'fd7a:115c:a1e0::1', '10.0.0.0/8', '[::1]:53', '0.0.0.0:8443', '24h', 'tag:web', 'db-1.warren.internal')), s => {
    parseIpAddress(s)
    parseIpPrefix(s)
    parseIpPrefix(s, { strict: true })
    warrenErrorOr(() => parseHostPort(s, '--listen'))
    warrenErrorOr(() => parseDuration(s))
  }), RUNS)
  t.pass('names, durations, host:port and IP addresses')
})
