import { createPrivateKey, createPublicKey, diffieHellman, createHmac, timingSafeEqual, type KeyObject } from 'node:crypto'

/**
 * WireGuardProofVerifier checks the protocol's wireGuardProof (HMAC-SHA256 keyed with the
 * X25519 shared secret) through OpenSSL rather than pure JS: registration storms after a
 * controller restart are bound by this and the signature check.
 */
export type WireGuardProofVerifier = (theirPublicKey: string, domain: string, message: string, proof: string) => boolean

/** createWireGuardProofVerifier binds the controller's X25519 private key (base64). */
export function createWireGuardProofVerifier (ourPrivateKey: string, ourPublicKey: string): WireGuardProofVerifier {
  const privateKey = createPrivateKey({
    key: { kty: 'OKP', crv: 'X25519', d: b64url(ourPrivateKey), x: b64url(ourPublicKey) },
    format: 'jwk'
  })
  return (theirPublicKey, domain, message, proof) => {
    const got = Buffer.from(proof, 'base64')
    if (got.length !== 32 || got.toString('base64') !== proof) return false
    let publicKey: KeyObject
    let shared: Buffer
    try {
      publicKey = createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: b64url(theirPublicKey) }, format: 'jwk' })
      shared = diffieHellman({ privateKey, publicKey })
    } catch {
      return false
    }
    const want = createHmac('sha256', shared).update(`${domain}\n${message}`, 'utf8').digest()
    return timingSafeEqual(want, got)
  }
}

function b64url (b64: string): string {
  return Buffer.from(b64, 'base64').toString('base64url')
}
