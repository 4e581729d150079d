import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

/**
 * Buffers that Node allocates for one read (a UDP receive, a TLS read) each own their
 * memory outside the JavaScript heap. On the TLS relay path that is tens of megabytes a
 * second, and V8 runs a full mark-compact for every 64 MB of such memory that builds up,
 * however little of the heap is live: the collector, not the copying, became the cost.
 * A buffer whose bytes were copied away can give its memory back at once instead:
 * ArrayBuffer.prototype.transfer(0) detaches it, frees its memory and takes it off V8's
 * count, so the collector is not called for it.
 */

type Transfer = (this: ArrayBuffer, length?: number) => ArrayBuffer

/**
 * transfer is ArrayBuffer.prototype.transfer (ES2024): built into Node 22 and later; on
 * Node 20 (V8 11.3) it is behind a flag that only contexts created after it is set see,
 * so it is taken from a fresh context (it works on any context's ArrayBuffers).
 */
function findTransfer (): Transfer | undefined {
  const own = (ArrayBuffer.prototype as { transfer?: Transfer }).transfer
  if (own !== undefined) return own
  try {
    setFlagsFromString('--harmony-rab-gsab-transfer')
    const fresh = runInNewContext('ArrayBuffer.prototype.transfer') as Transfer | undefined
    return typeof fresh === 'function' ? fresh : undefined
  } catch {
    return undefined
  }
}

let transfer: Transfer | undefined | null = null

/** WARREN_KEEP_READ_BUFFERS=1 leaves every buffer to the collector, to measure what releasing saves. */
const keep = process.env.WARREN_KEEP_READ_BUFFERS === '1'

/**
 * releaseBuffer frees the memory of `buf` now when `buf` spans all of its ArrayBuffer (so
 * no other view can share it: Node's pooled small buffers never do) and the runtime can;
 * otherwise it does nothing and the collector frees it later. Only for a buffer whose
 * bytes nobody reads again: afterwards it is empty.
 */
export function releaseBuffer (buf: Uint8Array): void {
  if (keep || buf.byteOffset !== 0 || buf.byteLength !== buf.buffer.byteLength || !(buf.buffer instanceof ArrayBuffer)) return
  if (transfer === null) transfer = findTransfer()
  transfer?.call(buf.buffer, 0)
}
