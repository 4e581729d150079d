import { createFakeSharedPort, type FakeSharedPort } from '../src/testing.js'
import type { UdpAddress } from '../src/nat/types.js'

/** FakeWire connects fake shared ports by address, so two nodes' probes reach each other. */
export interface FakeWire {
  /** port makes a fake shared port reachable at address:wgPort */
  port: (address: string, wgPort: number) => FakeSharedPort
  /** drop returns true for a packet the network loses */
  drop: (from: UdpAddress, to: UdpAddress, ttl?: number) => boolean
}

/** createFakeWire is a minimal network of fake shared ports for unit tests of probing. */
export function createFakeWire (): FakeWire {
  const ports = new Map<string, FakeSharedPort>()
  const key = (a: UdpAddress): string => `${a.address}:${a.port}`
  const wire: FakeWire = {
    drop: () => false,
    port (address, wgPort) {
      const self = { address, port: wgPort }
      const p = createFakeSharedPort({ wgPort })
      p.answer = s => {
        if (wire.drop(self, s.to, s.ttl)) return undefined
        const data = Uint8Array.from(s.data)
        setImmediate(() => ports.get(key(s.to))?.deliver({ kind: 'control', data, from: self }))
        return undefined
      }
      ports.set(key(self), p)
      return p
    }
  }
  return wire
}
