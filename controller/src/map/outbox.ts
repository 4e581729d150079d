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
  send: (text: string) => void
  /** close closes the socket after everything queued before it was sent */
  close: (code: number, reason: string) => void
  /** busy is true while a fragmented message is still being written */
  busy: () => boolean
}

type Item = { text: string } | { close: [number, string] }

function isHighSurrogate (code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff
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
      if (item.text.length <= fragmentBytes) {
        ws.send(item.text)
        continue
      }
      sending = true
      writeFragments(item.text, 0)
    }
  }

  /** writeFragments sends text[offset..] a fragment of about fragmentBytes UTF-16 units at a time (bytes, for ASCII JSON). */
  function writeFragments (text: string, offset: number): void {
    if (ws.readyState !== WebSocket.OPEN) { sending = false; queue.length = 0; return }
    let end = Math.min(offset + fragmentBytes, text.length)
    // Never split a surrogate pair: each fragment must encode to whole UTF-8 characters.
    if (end < text.length && end - 1 > offset && isHighSurrogate(text.charCodeAt(end - 1))) end--
    const fin = end === text.length
    ws.send(text.slice(offset, end), { binary: false, fin }, err => {
      if (err !== undefined && err !== null) { sending = false; queue.length = 0; return }
      if (fin) {
        sending = false
        pump()
      } else {
        writeFragments(text, end)
      }
    })
  }

  return {
    send (text) {
      queue.push({ text })
      pump()
    },
    close (code, reason) {
      queue.push({ close: [code, reason] })
      pump()
    },
    busy: () => sending
  }
}
