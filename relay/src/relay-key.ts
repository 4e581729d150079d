import { readFile, writeFile, chmod, stat } from 'node:fs/promises'
import { generateWireGuardKeyPair, wireGuardPublicKey, isWireGuardKey } from '@warren/protocol'

/** RelayKeyPair is the relay's X25519 key pair (base64); nodes seal binds to the public key. */
export interface RelayKeyPair {
  privateKey: string
  publicKey: string
}

/**
 * loadOrCreateRelayKey reads the relay's private key from `file`, or makes one and writes
 * it with mode 0600. A key file that others may read is tightened to 0600. The key is
 * never logged.
 */
export async function loadOrCreateRelayKey (file: string): Promise<RelayKeyPair> {
  let text: string | undefined
  try {
    text = (await readFile(file, 'utf8')).trim()
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e
  }
  if (text === undefined) {
    const kp = generateWireGuardKeyPair()
    await writeFile(file, `${kp.privateKey}\n`, { mode: 0o600, flag: 'wx' })
    return kp
  }
  if (!isWireGuardKey(text)) {
    throw Object.assign(new Error(`relay key file ${file} does not hold a 32-byte key in base64; remove it to make a new key (nodes learn the new one from the map)`), { code: 'bad_key' })
  }
  if (((await stat(file)).mode & 0o077) !== 0) await chmod(file, 0o600)
  return { privateKey: text, publicKey: wireGuardPublicKey(text) }
}
