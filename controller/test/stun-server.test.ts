import t from 'tap'
import dgram from 'node:dgram'
import { randomBytes } from 'node:crypto'
import { encodeStunBindingRequest, parseStunBindingResponse } from '@warren/protocol'
import { startStunServer } from '../src/stun-server.js'

/** The controller's STUN server on loopback: binding answers on both ports, junk ignored, a rate per source. */

async function client (t: { teardown: (fn: () => unknown) => void }, host = '127.0.0.1'): Promise<dgram.Socket> {
  const s = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4')
  await new Promise<void>(resolve => s.bind(0, host, resolve))
  t.teardown(() => { s.close() })
  return s
}

/** ask sends binding requests and collects the answers that arrive until `want` did. */
async function ask (s: dgram.Socket, port: number, count: number, want: number): Promise<Array<{ address: string, port: number }>> {
  const got: Array<{ address: string, port: number }> = []
  const done = new Promise<void>(resolve => {
    s.on('message', m => {
      const r = parseStunBindingResponse(m)
      if (r !== undefined) got.push(r.mapped)
      if (got.length >= want) resolve()
    })
  })
  for (let i = 0; i < count; i++) s.send(encodeStunBindingRequest(randomBytes(12)), port, s.address().address)
  await done
  s.removeAllListeners('message')
  return got
}

t.test('answers a binding request on both ports with the source it came from', async t => {
  const stun = await startStunServer({ host: '127.0.0.1', port: 0 })
  t.teardown(stun.close)
  const s = await client(t)
  const me = { address: '127.0.0.1', port: s.address().port }
  for (const port of stun.ports) t.same(await ask(s, port, 1, 1), [me], `port ${port}`)
  s.send(Buffer.from('not stun at all, but long enough to parse'), stun.ports[0], '127.0.0.1')
  t.same(await ask(s, stun.ports[0], 1, 1), [me], 'junk is ignored, the next request answered')
  t.same(stun.stats(), { answered: 3, limited: 0 })
})

t.test('listening on :: it answers over IPv6 with the IPv6 source, and over IPv4 with the plain IPv4 one', async t => {
  const stun = await startStunServer({ host: '::', port: 0 })
  t.teardown(stun.close)
  const s6 = await client(t, '::1')
  t.same(await ask(s6, stun.ports[0], 1, 1), [{ address: '::1', port: s6.address().port }])
  const s4 = await client(t)
  t.same(await ask(s4, stun.ports[1], 1, 1), [{ address: '127.0.0.1', port: s4.address().port }], 'not ::ffff:127.0.0.1')
})

t.test('limits answers per source address', async t => {
  const stun = await startStunServer({ host: '127.0.0.1', port: 0, ratePerSecond: 5 })
  t.teardown(stun.close)
  const s = await client(t)
  const got = await ask(s, stun.ports[0], 100, 10)
  t.ok(got.length >= 10)
  t.ok(stun.stats().limited > 0, 'requests past the burst are dropped')
  t.ok(stun.stats().answered < 100)
})

t.test('a taken port is a clear error', async t => {
  const first = await startStunServer({ host: '127.0.0.1', port: 0 })
  t.teardown(first.close)
  await t.rejects(startStunServer({ host: '127.0.0.1', port: first.ports[0] }), { code: 'stun_listen_failed', message: /--stun-port/ })
})
