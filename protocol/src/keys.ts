import nacl from 'tweetnacl'
import { x25519 } from '@noble/curves/ed25519.js'
import { sha256 } from '@noble/hashes/sha2.js'
import { hmac } from '@noble/hashes/hmac.js'
import { fromBase64, toBase64, utf8, toHex, constantTimeEqual } from './encoding.js'
import { WarrenError } from './errors.js'

/**
 * WireGuardKeyPair is an X25519 key pair in the base64 form that `wg` reads and prints.
 * The private key is clamped the way `wg genkey` clamps it.
 */
export interface WireGuardKeyPair {
  privateKey: string
  publicKey: string
}

/** MachineKeyPair is the node's Ed25519 identity for signing registration and sessions. */
export interface MachineKeyPair {
  /** base64 of the 64-byte tweetnacl secret key (seed and public key) */
  secretKey: string
  /** base64 of the 32-byte public key */
  publicKey: string
}

/** generateWireGuardKeyPair makes a new X25519 key pair, as `wg genkey | wg pubkey` would. */
export function generateWireGuardKeyPair (random: (n: number) => Uint8Array = nacl.randomBytes): WireGuardKeyPair {
  const priv = random(32)
  priv[0]! &= 248
  priv[31]! &= 127
  priv[31]! |= 64
  return { privateKey: toBase64(priv), publicKey: wireGuardPublicKey(toBase64(priv)) }
}

/** wireGuardPublicKey derives the public key from a base64 private key. */
export function wireGuardPublicKey (privateKey: string): string {
  const priv = fromBase64(privateKey, 32)
  if (priv === null) throw new WarrenError('bad_key', 'WireGuard private key must be 32 bytes in base64')
  return toBase64(x25519.getPublicKey(priv))
}

/** isWireGuardKey says whether s is a 32-byte key in base64 (the form `wg` uses). */
export function isWireGuardKey (s: unknown): s is string {
  return typeof s === 'string' && fromBase64(s, 32) !== null
}

/**
 * isCanonicalWireGuardKey says whether s is a WireGuard public key in its one canonical
 * encoding: a little-endian number below 2^255 - 19. X25519 ignores bit 255 and reduces
 * modulo 2^255 - 19, so a key with bit 255 flipped (or a value at or above the prime)
 * names the same key as its canonical twin. We refuse such encodings rather than rewrite
 * them: every key a real X25519 derivation prints is canonical, so only a crafted key is
 * refused, and WireGuard hashes the key's bytes into its handshake, so a rewritten key
 * would not be the one the node handshakes as.
 */
export function isCanonicalWireGuardKey (s: unknown): s is string {
  const b = typeof s === 'string' ? fromBase64(s, 32) : null
  if (b === null) return false
  if (b[31]! < 0x7f) return true
  if (b[31]! > 0x7f) return false
  for (let i = 30; i >= 1; i--) if (b[i] !== 0xff) return true
  return b[0]! < 0xed
}

/** generateMachineKeyPair makes a new Ed25519 machine key pair. */
export function generateMachineKeyPair (): MachineKeyPair {
  const kp = nacl.sign.keyPair()
  return { secretKey: toBase64(kp.secretKey), publicKey: toBase64(kp.publicKey) }
}

/** isMachineKey says whether s is a 32-byte Ed25519 public key in base64. */
export function isMachineKey (s: unknown): s is string {
  return typeof s === 'string' && fromBase64(s, 32) !== null
}

/** signMessage signs a domain-separated message with the machine key; returns base64. */
export function signMessage (secretKey: string, domain: string, message: string): string {
  const sk = fromBase64(secretKey, 64)
  if (sk === null) throw new WarrenError('bad_key', 'machine secret key must be 64 bytes in base64')
  return toBase64(nacl.sign.detached(utf8(`${domain}\n${message}`), sk))
}

/** verifyMessage checks a signature made by signMessage. */
export function verifyMessage (publicKey: string, domain: string, message: string, signature: string): boolean {
  const pk = fromBase64(publicKey, 32)
  const sig = fromBase64(signature, 64)
  if (pk === null || sig === null) return false
  return nacl.sign.detached.verify(utf8(`${domain}\n${message}`), sig, pk)
}

/**
 * wireGuardProof proves possession of a WireGuard private key to the holder of another
 * X25519 key: an HMAC keyed with their shared secret. Only the holders of either private
 * key can compute it, so the controller learns that the node owns the key it registers.
 */
export function wireGuardProof (ourPrivateKey: string, theirPublicKey: string, domain: string, message: string): string {
  const priv = fromBase64(ourPrivateKey, 32)
  const pub = fromBase64(theirPublicKey, 32)
  if (priv === null || pub === null) throw new WarrenError('bad_key', 'WireGuard keys must be 32 bytes in base64')
  const shared = x25519.getSharedSecret(priv, pub)
  return toBase64(hmac(sha256, shared, utf8(`${domain}\n${message}`)))
}

/** verifyWireGuardProof checks a proof from wireGuardProof in constant time. */
export function verifyWireGuardProof (ourPrivateKey: string, theirPublicKey: string, domain: string, message: string, proof: string): boolean {
  const got = fromBase64(proof, 32)
  if (got === null || !isWireGuardKey(theirPublicKey)) return false
  let want: string
  try { want = wireGuardProof(ourPrivateKey, theirPublicKey, domain, message) } catch { return false }
  return constantTimeEqual(fromBase64(want, 32)!, got)
}

/** sha256Hex hashes a string (used to store secrets hashed). */
export function sha256Hex (s: string): string {
  return toHex(sha256(utf8(s)))
}

/** randomToken returns n random bytes. */
export function randomBytes (n: number): Uint8Array {
  return nacl.randomBytes(n)
}
