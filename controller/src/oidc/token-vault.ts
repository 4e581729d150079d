import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto'
import { readFile, writeFile, rename, chmod } from 'node:fs/promises'
import { join } from 'node:path'
import { WarrenError } from '@warren/protocol'
import type { StoreOp } from '../store.js'
import type { IdpIdentity } from '../state.js'

export const TOKEN_KEY_FILE = 'oidc-token.key'
const PREFIX = 'oidc-token!'

/** SealedToken is a refresh token as stored: AES-256-GCM under the vault key. */
export interface SealedToken { iv: string, tag: string, data: string, updated: string }

/**
 * TokenVault keeps the provider's refresh tokens encrypted at rest: the database holds
 * them sealed with a key that lives in its own 0600 file in the state dir, so a copy of
 * the database alone gives no tokens. One token per identity (issuer + subject).
 */
export interface TokenVault {
  /** storeOp is the op that saves `token` for `id`, to write with the login's other changes */
  storeOp: (id: Pick<IdpIdentity, 'issuer' | 'subject'>, token: string, now: string) => StoreOp
  /** open gives back the token sealed for `id` (the continuous check refreshes with it) */
  open: (id: Pick<IdpIdentity, 'issuer' | 'subject'>, sealed: SealedToken) => string
  /** storeKey is where an identity's token is stored */
  storeKey: (id: Pick<IdpIdentity, 'issuer' | 'subject'>) => string
}

/** openTokenVault loads the vault key from the state dir, or makes it (0600). */
export async function openTokenVault (stateDir: string): Promise<TokenVault> {
  const key = await loadOrCreateKey(join(stateDir, TOKEN_KEY_FILE))
  const storeKey = (id: Pick<IdpIdentity, 'issuer' | 'subject'>): string =>
    PREFIX + createHash('sha256').update(`${id.issuer}\n${id.subject}`).digest('hex')
  return {
    storeKey,
    storeOp (id, token, now) {
      const iv = randomBytes(12)
      const cipher = createCipheriv('aes-256-gcm', key, iv)
      cipher.setAAD(Buffer.from(storeKey(id)))
      const data = Buffer.concat([cipher.update(token, 'utf8'), cipher.final()])
      const value: SealedToken = { iv: iv.toString('base64'), tag: cipher.getAuthTag().toString('base64'), data: data.toString('base64'), updated: now }
      return { type: 'raw-put', key: storeKey(id), value }
    },
    open (id, sealed) {
      const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(sealed.iv, 'base64'))
      decipher.setAAD(Buffer.from(storeKey(id)))
      decipher.setAuthTag(Buffer.from(sealed.tag, 'base64'))
      return Buffer.concat([decipher.update(Buffer.from(sealed.data, 'base64')), decipher.final()]).toString('utf8')
    }
  }
}

async function loadOrCreateKey (path: string): Promise<Buffer> {
  try {
    const key = Buffer.from((await readFile(path, 'utf8')).trim(), 'hex')
    if (key.length !== 32) throw new WarrenError('bad_token_key', `${path} does not hold a 32-byte hex key; move it away (stored refresh tokens are then lost) and restart`)
    return key
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e
  }
  const key = randomBytes(32)
  await writeFile(`${path}.tmp`, `${key.toString('hex')}\n`, { mode: 0o600 })
  await chmod(`${path}.tmp`, 0o600)
  await rename(`${path}.tmp`, path)
  return key
}
