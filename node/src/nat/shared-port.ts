/**
 * SystemSharedPort is the real SharedPort: a UDP socket of the daemon's, bound to the
 * node's mesh IPv4 address on a port of its own, plus the firewall's two stateless
 * shared-port rules (firewall/shared-port-rules.ts) that make it share WireGuard's port:
 * STUN answers and control packets arriving on the WireGuard port are rewritten to the
 * socket, and what the socket sends leaves from the WireGuard port with the egress
 * interface's address. So the node listens on no UDP port of its own outside the mesh
 * (`ss -lnu` shows the socket on the mesh address only), and the daemon's probes,
 * binds and STUN requests travel the same NAT mapping as WireGuard's data.
 *
 * The egress map (interface -> source address) is read from the host's interfaces;
 * `refresh()` re-reads it and puts a changed map in force (an element update). `close()`
 * closes the socket only: the rules stay in the firewall's table until it is set without
 * them or removed (`warren down`), like the rest of the table.
 */
import dgram from 'node:dgram'
import type os from 'node:os'
import { classifyWgPortPacket, createSerialQueue, WarrenError } from '@warren/protocol'
import { egressAddresses } from '../control/endpoints.js'
import type { SharedPortRules } from '../engine/types.js'
import type { SharedPort, SharedPortPacket, UdpAddress } from './types.js'

/** DEFAULT_TTL is what a TTL-limited send restores afterwards (Linux's default). */
const DEFAULT_TTL = 64

export interface SystemSharedPortInit {
  /** WireGuard's UDP port */
  wgPort: number
  /** the node's mesh IPv4 address: the socket binds there */
  meshAddress: string
  /** the mesh interface: never an egress */
  meshInterface: string
  /** applyRules puts rules in force (the firewall, through the data plane); undefined removes them */
  applyRules: (rules: SharedPortRules | undefined) => Promise<void>
  /** a control port to try first (the last one, so a restart does not change the table); 0 or absent: any */
  controlPort?: number
  /** interfaces() defaults to os.networkInterfaces(); tests pass a table */
  interfaces?: () => NodeJS.Dict<os.NetworkInterfaceInfo[]>
}

/** SystemSharedPort is a SharedPort that also tells its rules and follows interface changes. */
export interface SystemSharedPort extends SharedPort {
  readonly meshAddress: string
  readonly controlPort: number
  /** rules are the shared-port rules as they should be in force now */
  rules: () => SharedPortRules
  /** refresh re-reads the egress addresses and, if they changed, puts them in force; true when they changed */
  refresh: () => Promise<boolean>
}

async function bindSocket (address: string, port: number): Promise<dgram.Socket> {
  const sock = dgram.createSocket({ type: 'udp4' })
  await new Promise<void>((resolve, reject) => {
    sock.once('error', reject)
    sock.bind({ address, port, exclusive: true }, () => { sock.off('error', reject); resolve() })
  })
  return sock
}

/**
 * openSystemSharedPort binds the control socket on the mesh address and puts the rules in
 * force. It throws WarrenError `shared_port_failed` when the address is not (yet) this
 * host's or the rules are refused.
 */
export async function openSystemSharedPort (init: SystemSharedPortInit): Promise<SystemSharedPort> {
  let sock: dgram.Socket
  try {
    sock = await bindSocket(init.meshAddress, init.controlPort ?? 0).catch(async () => await bindSocket(init.meshAddress, 0))
  } catch (e) {
    throw new WarrenError('shared_port_failed', `cannot bind the control socket on the mesh address ${init.meshAddress}: ${(e as Error).message} (is the mesh interface up with its address?)`, { status: 500, cause: e })
  }
  const controlPort = sock.address().port
  const egressOf = (): Record<string, string> => egressAddresses({ meshInterface: init.meshInterface, ...(init.interfaces !== undefined ? { interfaces: init.interfaces } : {}) })
  let egress = egressOf()
  const rules = (): SharedPortRules => ({ wgPort: init.wgPort, controlAddress: init.meshAddress, controlPort, egress })
  const handlers = { stun: new Set<(p: SharedPortPacket) => void>(), control: new Set<(p: SharedPortPacket) => void>() }
  const sends = createSerialQueue()
  let closed = false

  sock.on('message', (msg, rinfo) => {
    const kind = classifyWgPortPacket(msg)
    if (kind !== 'stun' && kind !== 'control') return
    const p: SharedPortPacket = { kind, data: new Uint8Array(msg.buffer, msg.byteOffset, msg.byteLength), from: { address: rinfo.address, port: rinfo.port } }
    for (const h of handlers[kind]) h(p)
  })
  // A send error (unreachable, say) must not end the daemon; the caller sees it from send().
  sock.on('error', () => undefined)

  try {
    await init.applyRules(rules())
  } catch (e) {
    sock.close()
    throw new WarrenError('shared_port_failed', `cannot put the shared-port rules in force: ${(e as Error).message}`, { status: 500, cause: e })
  }

  const sendNow = async (data: Uint8Array, to: UdpAddress): Promise<void> => await new Promise((resolve, reject) => {
    sock.send(data, to.port, to.address, err => { if (err !== null) reject(err); else resolve() })
  })

  return {
    wgPort: init.wgPort,
    meshAddress: init.meshAddress,
    controlPort,
    rules,
    // Sends are serial: a TTL set for one packet must not apply to another's send.
    send: async (data, to, opts) => await sends.run(async () => {
      if (closed) throw new WarrenError('shared_port_closed', 'the shared port is closed', { status: 500 })
      if (opts?.ttl === undefined) return await sendNow(data, to)
      sock.setTTL(opts.ttl)
      try {
        await sendNow(data, to)
      } finally {
        sock.setTTL(DEFAULT_TTL)
      }
    }),
    onPacket (kind, handler) {
      handlers[kind].add(handler)
      return () => { handlers[kind].delete(handler) }
    },
    async refresh () {
      const next = egressOf()
      const before = JSON.stringify(Object.entries(egress).sort())
      if (closed || JSON.stringify(Object.entries(next).sort()) === before) return false
      egress = next
      await init.applyRules(rules())
      return true
    },
    async close () {
      if (closed) return
      closed = true
      await sends.run(async () => undefined)
      await new Promise<void>(resolve => sock.close(() => resolve()))
    }
  }
}
