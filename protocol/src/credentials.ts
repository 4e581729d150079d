import { base32, unbase32, toHex } from './encoding.js'
import { randomBytes, sha256Hex } from './keys.js'
import { WarrenError } from './errors.js'

/**
 * Credentials: auth keys (join a node) and API keys (admin API). Both look like
 * `wrnauth-<id>-<secret>-<pin>` / `wrnapi-<id>-<secret>-<pin>`: the id finds the record,
 * the secret is checked against a stored SHA-256 hash, and the pin is the controller's
 * TLS certificate fingerprint, so that one string is all a client needs to reach and
 * trust the controller. All parts are lowercase base32 or hex: no character that a
 * shell or a copy-paste mangles.
 */
export type CredentialKind = 'auth' | 'api'

export interface ParsedCredential {
  kind: CredentialKind
  id: string
  secret: string
  /** certificate fingerprint as 64 lowercase hex digits, when the key carries one */
  fingerprint?: string
}

const PREFIX: Record<CredentialKind, string> = { auth: 'wrnauth', api: 'wrnapi' }

/** newCredential makes a fresh id and secret for a credential of the given kind. */
export function newCredential (kind: CredentialKind, fingerprint?: string): { key: string, id: string, secretHash: string } {
  const id = toHex(randomBytes(6))
  const secret = base32(randomBytes(20))
  const key = formatCredential({ kind, id, secret, ...(fingerprint !== undefined ? { fingerprint } : {}) })
  return { key, id, secretHash: hashSecret(secret) }
}

export function formatCredential (c: ParsedCredential): string {
  const base = `${PREFIX[c.kind]}-${c.id}-${c.secret}`
  if (c.fingerprint === undefined) return base
  const fp = normalizeFingerprint(c.fingerprint)
  return `${base}-${base32(Buffer.from(fp, 'hex'))}`
}

/** parseCredential reads a credential string; throws a clear error if malformed. */
export function parseCredential (s: string, want: CredentialKind): ParsedCredential {
  const what = want === 'auth' ? 'auth key' : 'API key'
  const parts = typeof s === 'string' ? s.trim().split('-') : []
  if (parts.length < 3 || parts.length > 4 || parts[0] !== PREFIX[want]) {
    throw new WarrenError('bad_credential', `malformed ${what}: it should look like ${PREFIX[want]}-<id>-<secret>[-<pin>], as printed by 'warren admin ${want === 'auth' ? 'keys' : 'apikeys'} create'`, { status: 401 })
  }
  const [, id, secret, pin] = parts as [string, string, string, string | undefined]
  if (!/^[0-9a-f]{12}$/.test(id) || !/^[a-z2-7]{32}$/.test(secret)) {
    throw new WarrenError('bad_credential', `malformed ${what}: its id or secret part is damaged; copy the whole key again`, { status: 401 })
  }
  const out: ParsedCredential = { kind: want, id, secret }
  if (pin !== undefined) {
    const bytes = unbase32(pin)
    if (bytes === null || bytes.length !== 32 || pin.length !== 52) {
      throw new WarrenError('bad_credential', `malformed ${what}: its certificate pin part is damaged; copy the whole key again`, { status: 401 })
    }
    out.fingerprint = toHex(bytes)
  }
  return out
}

/** hashSecret is how credential secrets are stored: never in clear. */
export function hashSecret (secret: string): string {
  return sha256Hex(`warren-credential\n${secret}`)
}

/**
 * normalizeFingerprint accepts a SHA-256 certificate fingerprint as hex (with or without
 * colons, any case, optional `sha256:` prefix) or as the 52-character base32 pin, and
 * returns 64 lowercase hex digits.
 */
export function normalizeFingerprint (s: string): string {
  let t = s.trim().toLowerCase()
  if (t.startsWith('sha256:')) t = t.slice(7)
  const hex = t.replace(/:/g, '')
  if (/^[0-9a-f]{64}$/.test(hex)) return hex
  if (/^[a-z2-7]{52}$/.test(t)) {
    const b = unbase32(t)
    if (b !== null && b.length === 32) return toHex(b)
  }
  throw new WarrenError('bad_fingerprint', `'${s}' is not a SHA-256 certificate fingerprint: expected 64 hex digits (colons allowed), as the controller prints at start`)
}

/** displayFingerprint formats 64 hex digits as colon-separated uppercase pairs (openssl style). */
export function displayFingerprint (hex: string): string {
  return normalizeFingerprint(hex).toUpperCase().match(/../g)!.join(':')
}
