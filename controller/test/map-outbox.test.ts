import t from 'tap'
import { WebSocketServer, WebSocket } from 'ws'
import { createOutbox } from '../src/map/outbox.js'

t.test('an outbox fragments long text and messages given in pieces without splitting characters and delivers messages whole, in order', async t => {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 })
  t.teardown(() => { wss.close() })
  await new Promise<void>(resolve => wss.once('listening', () => resolve()))
  const port = (wss.address() as { port: number }).port
  const shared = `"${'😀é'.repeat(20)}"`
  const messages: Array<string | string[]> = [
    'short',
    `{"name":"${'😀é'.repeat(500)}x"}`,
    ['{"peers":[', shared, ',', shared, ',', '', 'x😀', '😀', '],"filter":', 'a'.repeat(1000), '}'],
    '😀😀😀'
  ]
  const texts = messages.map(m => typeof m === 'string' ? m : m.join(''))
  wss.once('connection', ws => {
    const outbox = createOutbox(ws, 7)
    for (const m of messages) outbox.send(m)
    outbox.close(1000, 'done')
  })
  const client = new WebSocket(`ws://127.0.0.1:${port}`)
  const got: string[] = []
  client.on('message', (data, isBinary) => { if (!isBinary) got.push(data.toString('utf8')) })
  const code = await new Promise<number>(resolve => client.once('close', c => resolve(c)))
  t.equal(code, 1000, 'closed after everything queued was sent')
  t.same(got, texts, 'every message arrived whole and unchanged (valid UTF-8 in every fragment, or ws would have failed the socket)')
})
