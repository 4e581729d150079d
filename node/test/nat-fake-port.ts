import type { SharedPort, SharedPortPacket, UdpAddress } from '../src/nat/types.js'

/** FakeWire connects in-memory shared ports by address; `drop` decides what is lost. */
export interface FakeWire {
  port: (address: string, wgPort: number) => SharedPort & { sent: Array<{ data: Uint8Array, to: UdpAddress, ttl?: number }> }
  /** drop returns true for a packet the network loses */
  drop: (from: UdpAddress, to: UdpAddress, ttl?: number) => boolean
  /** deliver takes a packet as if it had arrived from `from` */
  inject: (to: UdpAddress, p: SharedPortPacket) => void
}

/** createFakeWire is a minimal network of shared ports for unit tests of probing. */
export function createFakeWire (): FakeWire {
  const ports = new Map<string, Map<string, Set<(p: SharedPortPacket) => void>>>()
  const key = (a: UdpAddress): string => `${a.address}:${a.port}`
  const wire: FakeWire = {
    drop: () => false,
    inject (to, p) {
      for (const h of ports.get(key(to))?.get(p.kind) ?? []) h(p)
    },
    port (address, wgPort) {
      const handlers = new Map<string, Set<(p: SharedPortPacket) => void>>([['stun', new Set()], ['control', new Set()]])
      const self = { address, port: wgPort }
      ports.set(key(self), handlers)
      const sent: Array<{ data: Uint8Array, to: UdpAddress, ttl?: number }> = []
      return {
        wgPort,
        sent,
        async send (data, to, opts) {
          sent.push({ data, to, ...(opts?.ttl !== undefined ? { ttl: opts.ttl } : {}) })
          if (wire.drop(self, to, opts?.ttl)) return
          queueMicrotask(() => wire.inject(to, { kind: 'control', data: Uint8Array.from(data), from: self }))
        },
        onPacket (kind, h) {
          handlers.get(kind)!.add(h)
          return () => handlers.get(kind)!.delete(h)
        },
        async close () { ports.delete(key(self)) }
      }
    }
  }
  return wire
}
