import { spawn } from 'node:child_process'
import type { Socket } from 'node:dgram'
import { readFile, readdir, readlink } from 'node:fs/promises'
import { releaseBuffer } from '@warren/sdk/transport'

/**
 * UDP segmentation offload for the TLS relay's loopback sockets.
 *
 * Every relayed WireGuard packet crosses a loopback UDP socket between WireGuard and the
 * relay client, and one syscall per packet there was what capped the TLS relay. Linux can
 * move many equal-sized datagrams in one syscall and one trip through the stack: with
 * UDP_SEGMENT (GSO) on a socket, one send of N*S bytes leaves as N datagrams of S bytes
 * (the last may be shorter), and wireguard-go, which enables UDP_GRO on its own socket,
 * receives them as one; with UDP_GRO on our socket, one receive returns the batch that
 * wireguard-go sent as one. Node's dgram has no setsockopt, so a short-lived Perl process
 * (perl-base is always installed on Debian) inherits the socket and sets both options on
 * it; when that fails, the socket works as before, one datagram per packet.
 */

const SOL_UDP = 17
const UDP_SEGMENT = 103
const UDP_GRO = 104

/** MAX_UDP_PAYLOAD is the largest IPv4 UDP payload, the most one GSO send may carry. */
export const MAX_UDP_PAYLOAD = 65_507
/** MAX_GSO_SEGMENTS is the kernel's limit of segments per GSO send (UDP_MAX_SEGMENTS). */
export const MAX_GSO_SEGMENTS = 64
/** WIREGUARD_OVERHEAD is what WireGuard adds to an inner packet: a 16-byte header and a 16-byte tag. */
export const WIREGUARD_OVERHEAD = 32

/** UdpOffload says which options the kernel took. */
export interface UdpOffload {
  /** sends of more than segmentBytes leave as datagrams of segmentBytes each */
  segmentBytes?: number
  /** receives may return several datagrams of one sender's batch, back to back */
  gro: boolean
}

/** socketFd finds the file descriptor of an IPv4 UDP socket bound to 127.0.0.1:port in this process. */
export async function socketFd (port: number): Promise<number | undefined> {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`
  const table = await readFile('/proc/self/net/udp', 'utf8')
  const row = table.split('\n').map(l => l.trim().split(/\s+/)).find(f => f[1] === local)
  const inode = row?.[9]
  if (inode === undefined || inode === '0') return undefined
  const want = `socket:[${inode}]`
  for (const name of await readdir('/proc/self/fd')) {
    try {
      if (await readlink(`/proc/self/fd/${name}`) === want) return Number(name)
    } catch { /* closed while we looked */ }
  }
  return undefined
}

const PERL_SETSOCKOPT = [
  'open(my $s, "+<&=3") or die "cannot open the inherited socket: $!\\n";',
  'my ($seg, $gro) = @ARGV;',
  `if ($seg > 0) { setsockopt($s, ${SOL_UDP}, ${UDP_SEGMENT}, pack("i", $seg)) or die "UDP_SEGMENT: $!\\n"; }`,
  `if ($gro) { setsockopt($s, ${SOL_UDP}, ${UDP_GRO}, pack("i", 1)) or die "UDP_GRO: $!\\n"; }`
].join(' ')

/**
 * enableUdpOffload sets UDP_SEGMENT (to segmentBytes, when given) and UDP_GRO (when gro)
 * on a bound IPv4 loopback socket. It resolves with what was set; it rejects with the
 * reason when nothing could be (no perl, an old kernel), and the socket is unchanged then.
 */
export async function enableUdpOffload (socket: Socket, opts: { segmentBytes?: number, gro?: boolean }): Promise<UdpOffload> {
  const seg = opts.segmentBytes ?? 0
  if (seg !== 0 && (!Number.isInteger(seg) || seg < 1 || seg > MAX_UDP_PAYLOAD)) throw new RangeError(`segment size ${seg} is outside 1..${MAX_UDP_PAYLOAD}`)
  const fd = await socketFd(socket.address().port)
  if (fd === undefined) throw new Error(`no file descriptor found for UDP socket 127.0.0.1:${socket.address().port}`)
  const gro = opts.gro === true
  await new Promise<void>((resolve, reject) => {
    const p = spawn('perl', ['-e', PERL_SETSOCKOPT, String(seg), gro ? '1' : '0'], { stdio: ['ignore', 'ignore', 'pipe', fd] })
    let err = ''
    p.stderr!.on('data', (d: Buffer) => { err += d.toString() })
    p.once('error', reject)
    p.once('close', code => {
      if (code === 0) resolve()
      else reject(new Error(`perl setsockopt exited with ${String(code)}: ${err.trim().slice(0, 300)}`))
    })
  })
  return { ...(seg !== 0 ? { segmentBytes: seg } : {}), gro }
}

const isDataHeader = (b: Uint8Array, at: number): boolean => b[at] === 4 && b[at + 1] === 0 && b[at + 2] === 0 && b[at + 3] === 0

/**
 * wireGuardSegmentSize finds the packet size of a datagram that UDP_GRO may have
 * coalesced; 0 when it holds one packet. The kernel coalesces only one sender's
 * equal-sized datagrams (the last may be shorter), so the batch is packets of one size S;
 * S is where the next transport-data header for the same receiver begins (type 4 and the
 * first packet's receiver index: 8 fixed bytes, never matched by chance in practice).
 * `lastSize` (the size found last time, usually MTU + 32) is tried first.
 */
export function wireGuardSegmentSize (buf: Uint8Array, lastSize = 0): number {
  const len = buf.length
  if (len < 64 || !isDataHeader(buf, 0)) return 0
  const matches = (at: number): boolean => isDataHeader(buf, at) &&
    buf[at + 4] === buf[4] && buf[at + 5] === buf[5] && buf[at + 6] === buf[6] && buf[at + 7] === buf[7]
  if (lastSize >= 32 && lastSize < len && matches(lastSize)) return lastSize
  for (let s = 32; s < len; s++) {
    if (matches(s)) return s
  }
  return 0
}

/** splitPackets calls onPacket with each `size`-byte packet of buf (the last may be shorter); all of buf when size is 0. */
export function splitPackets (buf: Uint8Array, size: number, onPacket: (packet: Uint8Array) => void): void {
  if (size === 0 || size >= buf.length) {
    onPacket(buf)
    return
  }
  for (let at = 0; at < buf.length; at += size) onPacket(buf.subarray(at, Math.min(at + size, buf.length)))
}

/**
 * SegmentBatcher gathers packets for one UDP_SEGMENT socket and sends runs of them with
 * one syscall: packets of exactly segmentBytes join the run, a shorter one ends it (the
 * kernel allows the last segment to be shorter), and a run never exceeds what one send
 * may carry. Runs go out at `flush`, called once per read of the relay connection. A run
 * is a copy, so the buffer a packet was read into may be reused (or freed) once `add`
 * returns.
 */
export interface SegmentBatcher {
  /** add copies one packet into the run; false when it is larger than the socket's segment size and was not sent */
  add: (packet: Uint8Array) => boolean
  flush: () => void
}

/**
 * createSegmentBatcher hands `send` each run, its packets back to back in a buffer of its
 * own, and `done`, to call once the send no longer needs the run: it gives the run's
 * memory back at once rather than to the garbage collector.
 */
export function createSegmentBatcher (send: (run: Uint8Array, done: () => void) => void, segmentBytes: number): SegmentBatcher {
  const maxRun = Math.max(1, Math.min(MAX_GSO_SEGMENTS, Math.floor(MAX_UDP_PAYLOAD / segmentBytes)))
  let buf: Buffer | undefined
  let used = 0
  let count = 0
  const flush = (): void => {
    if (buf === undefined) return
    const whole = buf
    const run = whole.subarray(0, used)
    buf = undefined
    used = count = 0
    send(run, () => releaseBuffer(whole))
  }
  return {
    add (packet) {
      if (packet.length > segmentBytes) return false
      // Unpooled, so that the run owns all of its memory and can give it back; a short
      // packet alone (an ACK, say) is a whole run, and gets a buffer of its size.
      buf ??= Buffer.allocUnsafeSlow(packet.length < segmentBytes ? packet.length : maxRun * segmentBytes)
      buf.set(packet, used)
      used += packet.length
      count++
      if (packet.length < segmentBytes || count >= maxRun) flush()
      return true
    },
    flush
  }
}
