import type { Cidr } from './types.js'

/*
 * Addresses are parsed here rather than with ipaddr.js: the compiler parses two
 * addresses per node and ipaddr.js costs about 70 µs per address, which alone made
 * indexing 10,000 nodes take over a second. A property test checks this parser
 * against ipaddr.js.
 */

/**
 * parseCidr reads an IPv4/IPv6 address (as a /32 or /128) or a CIDR into its canonical
 * form, or returns undefined. Host bits of a CIDR are cleared, so `10.0.0.1/8` is `10.0.0.0/8`.
 */
export function parseCidr (s: string): Cidr | undefined {
  const slash = s.indexOf('/')
  const addrText = slash < 0 ? s : s.slice(0, slash)
  const bytes = addrText.includes(':') ? parseIPv6(addrText) : parseIPv4(addrText)
  if (bytes === undefined) return undefined
  const max = bytes.length * 8
  let bits = max
  if (slash >= 0) {
    const b = s.slice(slash + 1)
    if (!/^\d{1,3}$/.test(b) || Number(b) > max) return undefined
    bits = Number(b)
  }
  return makeCidr(mask(bytes, bits), bits)
}

/** hostCidr is the /32 or /128 of one address; it throws on a bad address (a node's IPs are trusted). */
export function hostCidr (ip: string): Cidr {
  const c = ip.includes('/') ? undefined : parseCidr(ip)
  if (c === undefined) throw new Error(`not an IP address: ${ip}`)
  return c
}

function parseIPv4 (s: string): Uint8Array | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s)
  if (m === null) return undefined
  const out = new Uint8Array(4)
  for (let i = 0; i < 4; i++) {
    const part = m[i + 1]!
    if (part.length > 1 && part.startsWith('0')) return undefined
    const n = Number(part)
    if (n > 255) return undefined
    out[i] = n
  }
  return out
}

function parseIPv6 (s: string): Uint8Array | undefined {
  if (s.length > 45) return undefined
  const groups: number[] = []
  const parseGroups = (text: string): number[] | undefined => {
    if (text === '') return []
    const parts = text.split(':')
    const out: number[] = []
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i]!
      if (i === parts.length - 1 && p.includes('.')) {
        const v4 = parseIPv4(p)
        if (v4 === undefined) return undefined
        out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!)
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(p)) return undefined
        out.push(parseInt(p, 16))
      }
    }
    return out
  }
  const gap = s.indexOf('::')
  if (gap >= 0) {
    if (s.indexOf('::', gap + 1) >= 0) return undefined
    const head = parseGroups(s.slice(0, gap))
    const tail = parseGroups(s.slice(gap + 2))
    if (head === undefined || tail === undefined || head.length + tail.length > 7) return undefined
    groups.push(...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail)
  } else {
    const all = parseGroups(s)
    if (all === undefined || all.length !== 8) return undefined
    groups.push(...all)
  }
  const out = new Uint8Array(16)
  groups.forEach((g, i) => { out[2 * i] = g >> 8; out[2 * i + 1] = g & 0xff })
  return out
}

function mask (bytes: Uint8Array, bits: number): Uint8Array {
  const out = new Uint8Array(bytes)
  for (let i = 0; i < out.length; i++) {
    const keep = Math.max(0, Math.min(8, bits - i * 8))
    out[i] = out[i]! & (0xff << (8 - keep)) & 0xff
  }
  return out
}

/** formatIPv6 writes RFC 5952 text: lowercase, no leading zeros, the longest zero run as `::`. */
function formatIPv6 (bytes: Uint8Array): string {
  const groups = new Array<number>(8)
  for (let i = 0; i < 8; i++) groups[i] = (bytes[2 * i]! << 8) | bytes[2 * i + 1]!
  let bestStart = -1
  let bestLen = 1
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) { i++; continue }
    let j = i
    while (j < 8 && groups[j] === 0) j++
    if (j - i > bestLen) { bestStart = i; bestLen = j - i }
    i = j
  }
  let out = ''
  for (let i = 0; i < 8; i++) {
    if (i === bestStart) { out += '::'; i += bestLen - 1; continue }
    if (out !== '' && !out.endsWith(':')) out += ':'
    out += groups[i]!.toString(16)
  }
  return out
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'))

function makeCidr (bytes: Uint8Array, bits: number): Cidr {
  const family = bytes.length === 4 ? 4 : 6
  let key = String(family)
  for (const b of bytes) key += HEX[b]
  const addr = family === 4 ? bytes.join('.') : formatIPv6(bytes)
  return { text: `${addr}/${bits}`, family, bytes, bits, sortKey: `${key}${String(bits).padStart(3, '0')}` }
}

/** cidrContains says whether `inner` lies entirely inside `outer`. */
export function cidrContains (outer: Cidr, inner: Cidr): boolean {
  if (outer.family !== inner.family || inner.bits < outer.bits) return false
  const full = outer.bits >> 3
  for (let i = 0; i < full; i++) if (outer.bytes[i] !== inner.bytes[i]) return false
  const rest = outer.bits & 7
  if (rest === 0) return true
  const m = (0xff << (8 - rest)) & 0xff
  return (outer.bytes[full]! & m) === (inner.bytes[full]! & m)
}

/** ALL_V4 and ALL_V6 are what `*` means as a source address. */
export const ALL_V4 = parseCidr('0.0.0.0/0')!
export const ALL_V6 = parseCidr('::/0')!
