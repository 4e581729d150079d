import { createSocket } from 'node:dgram'
import { once } from 'node:events'
import { classifyWgPortPacket } from '@warren/protocol'
import type { SharedPort, SharedPortPacket } from './types.js'

/**
 * createFakeLoopbackSharedPort is a SharedPort without nftables: one UDP socket on
 * 127.0.0.1 stands in for the WireGuard port (so `wgPort` is that socket's port). It
 * delivers STUN answers and control packets the way the real shared port classifies
 * them, for tests of relay and probe clients against real sockets on loopback.
 */
export async function createFakeLoopbackSharedPort (): Promise<SharedPort> {
  const s = createSocket('udp4')
  s.bind(0, '127.0.0.1')
  await once(s, 'listening')
  const handlers = new Set<{ kind: SharedPortPacket['kind'], h: (p: SharedPortPacket) => void }>()
  s.on('message', (data, from) => {
    const kind = classifyWgPortPacket(data)
    if (kind !== 'stun' && kind !== 'control') return
    for (const x of handlers) if (x.kind === kind) x.h({ kind, data, from: { address: from.address, port: from.port } })
  })
  let closed = false
  return {
    wgPort: s.address().port,
    send: async (data, to) => {
      await new Promise<void>((resolve, reject) => s.send(data, to.port, to.address, err => err === null ? resolve() : reject(err)))
    },
    onPacket (kind, h) {
      const x = { kind, h }
      handlers.add(x)
      return () => { handlers.delete(x) }
    },
    close: async () => {
      if (closed) return
      closed = true
      s.close()
    }
  }
}
