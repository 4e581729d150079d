import { STUN_MAGIC_COOKIE } from './control-packet.js'
import ipaddr from 'ipaddr.js'
import { parseHostPort } from './util.js'
import { WarrenError } from './errors.js'

/**
 * A minimal RFC 5389 STUN codec: binding requests and success responses with
 * XOR-MAPPED-ADDRESS (MAPPED-ADDRESS is read too, for old servers). That is all a node
 * needs to learn the public mapping of its WireGuard port.
 */

/** DEFAULT_STUN_PORT is the IANA STUN port, where the controller answers by default. */
export const DEFAULT_STUN_PORT = 3478

/**
 * stunServerAddress reads one `nat.stun` entry: `host:port`, `[v6]:port`, or `:port` for
 * the host of the controller URL the node joined with. It throws on anything else.
 */
export function stunServerAddress (entry: string, controllerUrl: string): { host: string, port: number } {
  const { host, port } = parseHostPort(entry, 'STUN server')
  if (port === 0) throw new WarrenError('bad_host_port', `STUN server '${entry}' has port 0`, { field: 'STUN server' })
  if (host !== '') return { host, port }
  return { host: new URL(controllerUrl).hostname.replace(/^\[(.*)\]$/, '$1'), port }
}

const BINDING_REQUEST = 0x0001
const BINDING_SUCCESS = 0x0101
const ATTR_MAPPED_ADDRESS = 0x0001
const ATTR_XOR_MAPPED_ADDRESS = 0x0020
const HEADER = 20

/** StunAddress is an address as STUN carries it; IPv6 without brackets. */
export interface StunAddress { address: string, port: number }

function header (type: number, length: number, txid: Uint8Array): Uint8Array {
  if (txid.length !== 12) throw new Error('a STUN transaction id is 12 bytes')
  const b = new Uint8Array(HEADER + length)
  const v = new DataView(b.buffer)
  v.setUint16(0, type); v.setUint16(2, length); v.setUint32(4, STUN_MAGIC_COOKIE)
  b.set(txid, 8)
  return b
}

function readHeader (b: Uint8Array, type: number): { txid: Uint8Array, length: number } | undefined {
  if (b.length < HEADER) return undefined
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength)
  if (v.getUint16(0) !== type || v.getUint32(4) !== STUN_MAGIC_COOKIE) return undefined
  const length = v.getUint16(2)
  if (length % 4 !== 0 || HEADER + length > b.length) return undefined
  return { txid: b.slice(8, 20), length }
}

/** encodeStunBindingRequest makes a binding request with no attributes. */
export function encodeStunBindingRequest (txid: Uint8Array): Uint8Array {
  return header(BINDING_REQUEST, 0, txid)
}

/** parseStunBindingRequest returns the transaction id of a binding request, or undefined. */
export function parseStunBindingRequest (b: Uint8Array): { txid: Uint8Array } | undefined {
  const h = readHeader(b, BINDING_REQUEST)
  return h === undefined ? undefined : { txid: h.txid }
}

/** encodeStunBindingResponse answers a request with the address it came from (XOR-MAPPED-ADDRESS). */
export function encodeStunBindingResponse (txid: Uint8Array, from: StunAddress): Uint8Array {
  if (!ipaddr.isValid(from.address)) throw new Error(`STUN: '${from.address}' is not an IP address`)
  const bytes = Uint8Array.from(ipaddr.parse(from.address).toByteArray())
  const family = bytes.length === 4 ? 0x01 : 0x02
  const b = header(BINDING_SUCCESS, 4 + 4 + bytes.length, txid)
  const v = new DataView(b.buffer)
  v.setUint16(HEADER, ATTR_XOR_MAPPED_ADDRESS); v.setUint16(HEADER + 2, 4 + bytes.length)
  v.setUint8(HEADER + 5, family)
  v.setUint16(HEADER + 6, from.port ^ (STUN_MAGIC_COOKIE >>> 16))
  const mask = b.subarray(4, 20) // cookie then transaction id
  for (let i = 0; i < bytes.length; i++) b[HEADER + 8 + i] = bytes[i]! ^ mask[i]!
  return b
}

function formatAddress (bytes: Uint8Array): string {
  if (bytes.length === 4) return [...bytes].join('.')
  return ipaddr.fromByteArray([...bytes]).toString()
}

/**
 * parseStunBindingResponse returns the transaction id and mapped address of a binding
 * success response, or undefined when the packet is not one or carries no address.
 */
export function parseStunBindingResponse (b: Uint8Array): { txid: Uint8Array, mapped: StunAddress } | undefined {
  const h = readHeader(b, BINDING_SUCCESS)
  if (h === undefined) return undefined
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength)
  let plain: StunAddress | undefined
  for (let at = HEADER; at + 4 <= HEADER + h.length;) {
    const type = v.getUint16(at); const len = v.getUint16(at + 2)
    const val = at + 4
    if (val + len > HEADER + h.length) return undefined
    if ((type === ATTR_XOR_MAPPED_ADDRESS || type === ATTR_MAPPED_ADDRESS) && len >= 8) {
      const family = v.getUint8(val + 1)
      const size = family === 0x01 ? 4 : family === 0x02 ? 16 : 0
      if (size !== 0 && len >= 4 + size) {
        const raw = b.slice(val + 4, val + 4 + size)
        let port = v.getUint16(val + 2)
        if (type === ATTR_XOR_MAPPED_ADDRESS) {
          port ^= STUN_MAGIC_COOKIE >>> 16
          const mask = b.subarray(4, 20)
          for (let i = 0; i < size; i++) raw[i] = raw[i]! ^ mask[i]!
          return { txid: h.txid, mapped: { address: formatAddress(raw), port } }
        }
        plain = { address: formatAddress(raw), port }
      }
    }
    at = val + ((len + 3) & ~3)
  }
  return plain === undefined ? undefined : { txid: h.txid, mapped: plain }
}
