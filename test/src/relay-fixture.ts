/**
 * relay-fixture runs one side of a kernel-relay test inside a network namespace, since a
 * process's sockets live in the namespace it started in:
 *
 *   relay-fixture.js relay --key-file F --pair KEY_A,KEY_B ... [--listen HOST]
 *     starts the relay (real nftables and sysctls; on HOST, `::` for IPv6 too), allocates one pair per --pair and
 *     prints `allocated ID PORT_A PORT_B`; SIGUSR1 releases every allocation and prints
 *     `released`; SIGUSR2 prints `stats JSON`.
 *   relay-fixture.js peer --key PRIV --relay-key PUB --relay HOST:PORT --allocation ID
 *     stands in for a node's WireGuard port (HOST may be `[IPv6]`): one UDP socket binds (sealed bind, prints
 *     `bound ADDRESS:PORT` on the ack), then sends a WireGuard-shaped packet (type 4,
 *     three zero bytes, a sequence number) every 20 ms, printing `sent N` every 10th, and
 *     prints `recv N` for each such packet it gets.
 *   relay-fixture.js bind --key PRIV --relay-key PUB --relay HOST:PORT --allocation ID --local-port P
 *     sends a bind every 500 ms from local port P, for a test that rewrites P's packets to
 *     leave from a real WireGuard port (the shared-port rule); the relay's `bind` line
 *     tells when it took effect.
 *   relay-fixture.js swarm --relay-key PUB --relay-host HOST --file F
 *     many stand-in nodes in one process: F is a JSON list of { allocation, port, key };
 *     each binds (every 500 ms until acked, then every 5 s) and then sends a WireGuard-shaped
 *     packet every 100 ms. Prints `swarm bound N` when all N are bound, nothing per packet.
 */
import { createSocket } from 'node:dgram'
import { isIP } from 'node:net'
import { parseArgs } from 'node:util'
import { readFile } from 'node:fs/promises'
import {
  encodeRelayBind, openRelayBindAck, wireGuardPublicKey, parseHostPort, formatHostPort, classifyWgPortPacket
} from '@warren/protocol'
import { startUdpRelay, loadOrCreateRelayKey } from '@warren/relay'

const say = (line: string): void => { process.stdout.write(`${line}\n`) }

async function relay (args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { 'key-file': { type: 'string' }, pair: { type: 'string', multiple: true }, port: { type: 'string', default: '3479' }, listen: { type: 'string' } } })
  const key = await loadOrCreateRelayKey(values['key-file']!)
  const r = await startUdpRelay({ key, port: Number(values.port), portRange: { first: 41000, last: 41999 }, ...(values.listen !== undefined ? { listenHost: values.listen } : {}) })
  say(`relay ${key.publicKey} ${r.port}`)
  for (const pair of values.pair ?? []) {
    const [ka, kb] = pair.split(',') as [string, string]
    const a = await r.allocate({ nodeKeys: [ka, kb], expiresAt: Date.now() + 3_600_000 })
    say(`allocated ${a.id} ${a.sides[0].port} ${a.sides[1].port}`)
  }
  r.onBound((a, side) => say(`bind ${a.id} ${side}`))
  process.on('SIGUSR1', () => {
    void Promise.all(r.allocations().map(a => r.release(a.id))).then(() => say('released'))
  })
  process.on('SIGUSR2', () => say(`stats ${JSON.stringify(r.stats())}`))
  const stop = (): void => { void r.close().then(() => { say('stopped'); process.exit(0) }) }
  process.once('SIGTERM', stop)
  process.once('SIGINT', stop)
}

async function peer (args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { key: { type: 'string' }, 'relay-key': { type: 'string' }, relay: { type: 'string' }, allocation: { type: 'string' } } })
  const priv = values.key!
  const pub = wireGuardPublicKey(priv)
  const to = parseHostPort(values.relay!, '--relay')
  const s = createSocket(isIP(to.host) === 6 ? 'udp6' : 'udp4')
  await new Promise<void>(resolve => s.bind(0, () => resolve()))
  let bound = false
  let seq = 0
  s.on('message', msg => {
    const kind = classifyWgPortPacket(msg)
    if (kind === 'control') {
      const ack = openRelayBindAck(msg, values['relay-key']!, priv)
      if (ack !== undefined && !bound) {
        bound = true
        say(`bound ${formatHostPort(ack.observed.address, ack.observed.port)}`)
      }
    } else if (kind === 'wireguard' && msg.length >= 8) {
      say(`recv ${msg.readUInt32BE(4)}`)
    }
  })
  const sendBind = (): void => {
    s.send(encodeRelayBind({ allocation: values.allocation!, timestampMs: Date.now(), nodePrivateKey: priv, nodePublicKey: pub, relayPublicKey: values['relay-key']! }), to.port, to.host)
  }
  sendBind()
  const binder = setInterval(() => { if (!bound) sendBind() }, 200)
  const sender = setInterval(() => {
    if (!bound) return
    const p = Buffer.alloc(64)
    p[0] = 4
    p.writeUInt32BE(++seq, 4)
    s.send(p, to.port, to.host)
    if (seq % 10 === 0) say(`sent ${seq}`)
  }, 20)
  process.once('SIGTERM', () => { clearInterval(binder); clearInterval(sender); s.close(); process.exit(0) })
}

async function bind (args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { key: { type: 'string' }, 'relay-key': { type: 'string' }, relay: { type: 'string' }, allocation: { type: 'string' }, 'local-port': { type: 'string' } } })
  const priv = values.key!
  const to = parseHostPort(values.relay!, '--relay')
  const s = createSocket('udp4')
  await new Promise<void>(resolve => s.bind(Number(values['local-port']), () => resolve()))
  const send = (): void => {
    s.send(encodeRelayBind({ allocation: values.allocation!, timestampMs: Date.now(), nodePrivateKey: priv, nodePublicKey: wireGuardPublicKey(priv), relayPublicKey: values['relay-key']! }), to.port, to.host)
  }
  send()
  say('binding')
  const timer = setInterval(send, 500)
  process.once('SIGTERM', () => { clearInterval(timer); s.close(); process.exit(0) })
}

async function swarm (args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { 'relay-key': { type: 'string' }, 'relay-host': { type: 'string' }, file: { type: 'string' } } })
  const list = JSON.parse(await readFile(values.file!, 'utf8')) as Array<{ allocation: string, port: number, key: string }>
  const relayKey = values['relay-key']!
  let bound = 0
  const timers: NodeJS.Timeout[] = []
  for (const m of list) {
    const s = createSocket('udp4')
    await new Promise<void>(resolve => s.bind(0, () => resolve()))
    const pub = wireGuardPublicKey(m.key)
    let acked = false
    s.on('message', msg => {
      if (acked || openRelayBindAck(msg, relayKey, m.key) === undefined) return
      acked = true
      if (++bound === list.length) say(`swarm bound ${bound}`)
    })
    const bind = (): void => {
      s.send(encodeRelayBind({ allocation: m.allocation, timestampMs: Date.now(), nodePrivateKey: m.key, nodePublicKey: pub, relayPublicKey: relayKey }), m.port, values['relay-host']!)
    }
    bind()
    let tick = 0
    const data = Buffer.alloc(64)
    data[0] = 4
    timers.push(setInterval(() => {
      tick++
      if (!acked ? tick % 5 === 0 : tick % 50 === 0) bind()
      if (acked) s.send(data, m.port, values['relay-host']!)
    }, 100))
  }
  process.once('SIGTERM', () => { for (const t of timers) clearInterval(t); process.exit(0) })
}

const [mode, ...rest] = process.argv.slice(2)
if (mode === 'relay') await relay(rest)
else if (mode === 'peer') await peer(rest)
else if (mode === 'bind') await bind(rest)
else if (mode === 'swarm') await swarm(rest)
else {
  process.stderr.write('usage: relay-fixture.js relay|peer ...\n')
  process.exit(2)
}
