import { WebSocket } from 'ws'

/**
 * Outbox sends one socket's map messages in order, splitting a large message into
 * WebSocket fragments and writing the next fragment only once the previous one left.
 * Node's TLS layer keeps, per connection, buffers as large as the largest burst ever
 * written; with 10,000 sessions, full maps written in one piece cost about 45 KiB more
 * per connection for the life of the session than maps written a fragment at a time.
 * Fragments are cut from the string itself and encoded one at a time: encoding the whole
 * message into one Buffer first costs another ~20 KiB per connection (a 44 KiB native
 * allocation per full map, freed only at the next GC, leaves the malloc heap fragmented).
 */
export interface Outbox {
  /**
   * send queues one text message given as the pieces it is made of. A large message is
   * never joined into one string: fragments are cut from the pieces, so a filter or peer
   * view shared by many recipients is not copied once per recipient.
   */
  send: (pieces: string | readonly string[]) => void
  /** close closes the socket after everything queued before it was sent */
  close: (code: number, reason: string) => void
  /** busy is true while a fragmented message is still being written */
  busy: () => boolean
}

type Item = { pieces: readonly string[], length: number } | { close: [number, string] }

function isHighSurrogate (code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff
}

/** messageLength is the length in UTF-16 units of a message given as pieces. */
export function messageLength (pieces: string | readonly string[]): number {
  if (typeof pieces === 'string') return pieces.length
  let n = 0
  for (const p of pieces) n += p.length
  return n
}

export function createOutbox (ws: WebSocket, fragmentBytes = 16 * 1024): Outbox {
  const queue: Item[] = []
  let sending = false

  function pump (): void {
    while (!sending && queue.length > 0 && ws.readyState === WebSocket.OPEN) {
      const item = queue.shift()!
      if ('close' in item) {
        ws.close(...item.close)
        queue.length = 0
        return
      }
      if (item.length <= fragmentBytes) {
        ws.send(item.pieces.join(''))
        continue
      }
      sending = true
      writeFragments(item.pieces, 0, 0)
    }
  }

  /**
   * writeFragments sends the message from pieces[index][offset] on, a fragment of about
   * fragmentBytes UTF-16 units (bytes, for ASCII JSON) at a time.
   */
  function writeFragments (pieces: readonly string[], index: number, offset: number): void {
    if (ws.readyState !== WebSocket.OPEN) { sending = false; queue.length = 0; return }
    let fragment = ''
    let room = fragmentBytes
    while (room > 0 && index < pieces.length) {
      const piece = pieces[index]!
      let end = Math.min(offset + room, piece.length)
      // Never split a surrogate pair: each fragment must encode to whole UTF-8 characters.
      if (end < piece.length && isHighSurrogate(piece.charCodeAt(end - 1))) {
        if (end - 1 > offset) end--
        else if (fragment !== '') break // the pair starts the next fragment
        else end++ // a fragment of just this pair, one unit over
      }
      fragment += offset === 0 && end === piece.length ? piece : piece.slice(offset, end)
      room -= end - offset
      if (end < piece.length) {
        offset = end
        break
      }
      index++
      offset = 0
    }
    const fin = index === pieces.length
    ws.send(fragment, { binary: false, fin }, err => {
      if (err !== undefined && err !== null) { sending = false; queue.length = 0; return }
      if (fin) {
        sending = false
        pump()
      } else {
        writeFragments(pieces, index, offset)
      }
    })
  }

  return {
    send (pieces) {
      const list = typeof pieces === 'string' ? [pieces] : pieces
      queue.push({ pieces: list, length: messageLength(list) })
      pump()
    },
    close (code, reason) {
      queue.push({ close: [code, reason] })
      pump()
    },
    busy: () => sending
  }
}
