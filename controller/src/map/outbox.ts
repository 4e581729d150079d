import { WebSocket } from 'ws'

/**
 * Outbox sends one socket's map messages in order, splitting a large message into
 * WebSocket fragments and writing the next fragment only once the previous one left.
 * Node's TLS layer keeps, per connection, buffers as large as the largest burst ever
 * written; with 10,000 sessions, full maps written in one piece cost about 45 KiB more
 * per connection for the life of the session than maps written a fragment at a time.
 */
export interface Outbox {
  send: (text: string) => void
  /** close closes the socket after everything queued before it was sent */
  close: (code: number, reason: string) => void
  /** busy is true while a fragmented message is still being written */
  busy: () => boolean
}

type Item = { text: string } | { close: [number, string] }

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
      writeFragments(Buffer.from(item.text, 'utf8'), 0)
    }
  }

  function writeFragments (buf: Buffer, offset: number): void {
    if (ws.readyState !== WebSocket.OPEN) { sending = false; queue.length = 0; return }
    const end = Math.min(offset + fragmentBytes, buf.length)
    const fin = end === buf.length
    ws.send(buf.subarray(offset, end), { binary: false, fin }, err => {
      if (err !== undefined && err !== null) { sending = false; queue.length = 0; return }
      if (fin) {
        sending = false
        pump()
      } else {
        writeFragments(buf, end)
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
