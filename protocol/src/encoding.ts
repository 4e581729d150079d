/** Small, dependency-free encodings shared by keys, auth keys and fingerprints. */

const B32 = 'abcdefghijklmnopqrstuvwxyz234567'

/** base32 encodes bytes as lowercase RFC 4648 base32 without padding (copy-paste safe). */
export function base32 (bytes: Uint8Array): string {
  let out = ''
  let bits = 0
  let value = 0
  for (const b of bytes) {
    value = (value << 8) | b
    bits += 8
    while (bits >= 5) {
      out += B32[(value >>> (bits - 5)) & 31]
      bits -= 5
    }
  }
  if (bits > 0) out += B32[(value << (5 - bits)) & 31]
  return out
}

/** unbase32 decodes lowercase or uppercase base32 without padding; null if malformed. */
export function unbase32 (s: string): Uint8Array | null {
  const out: number[] = []
  let bits = 0
  let value = 0
  for (const ch of s.toLowerCase()) {
    const i = B32.indexOf(ch)
    if (i < 0) return null
    value = (value << 5) | i
    bits += 5
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 255)
      bits -= 8
    }
  }
  return Uint8Array.from(out)
}

export function toBase64 (bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64')
}

/** fromBase64 decodes strict standard base64 of an expected byte length; null otherwise. */
export function fromBase64 (s: string, length?: number): Uint8Array | null {
  if (typeof s !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(s) || s.length % 4 !== 0) return null
  const buf = Buffer.from(s, 'base64')
  if (length !== undefined && buf.length !== length) return null
  if (buf.toString('base64') !== s) return null
  return new Uint8Array(buf)
}

export function toHex (bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex')
}

export function utf8 (s: string): Uint8Array {
  return new TextEncoder().encode(s)
}

/** constantTimeEqual compares two byte strings without an early exit. */
export function constantTimeEqual (a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  let d = 0
  for (let i = 0; i < a.length; i++) d |= a[i]! ^ b[i]!
  return d === 0
}
