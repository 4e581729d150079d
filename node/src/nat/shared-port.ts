/**
 * SystemSharedPort is the real SharedPort: a UDP socket of the daemon's, bound to the
 * node's mesh IPv4 address on a port of its own (and one on the mesh IPv6 address on the
 * same port, when the host has IPv6), plus the firewall's stateless shared-port rules
 * (firewall/shared-port-rules.ts) that make it share WireGuard's port:
 * STUN answers and control packets arriving on the WireGuard port are rewritten to the
 * socket, and what the socket sends leaves from the WireGuard port with the egress
 * interface's address. So the node listens on no UDP port of its own outside the mesh
 * (`ss -lnu` shows the socket on the mesh address only), and the daemon's probes,
 * binds and STUN requests travel the same NAT mapping as WireGuard's data.
 *
 * The egress maps (interface -> source address, one per family) are read from the host's
 * interfaces; `refresh()` re-reads them and puts changed maps in force (an element
 * update). `close()` closes the sockets only: the rules stay in the firewall's table until
 * it is set without them or removed (`warren down`), like the rest of the table.
 */
import dgram from 'node:dgram'
import { isIP } from 'node:net'
import type os from 'node:os'
import ipaddr from 'ipaddr.js'
import { classifyWgPortPacket, createSerialQueue, WarrenError } from '@warren/protocol'
import { egressAddresses } from '../control/endpoints.js'
import { countEgressChanges } from '../firewall/shared-port-rules.js'
import type { SharedPortRules } from '../engine/types.js'
import type { SharedPort, SharedPortPacket, UdpAddress } from './types.js'

/** DEFAULT_TTL is what a TTL-limited send restores afterwards (Linux's default). */
const DEFAULT_TTL = 64

export interface SystemSharedPortInit {
  /** WireGuard's UDP port */
  wgPort: number
  /** the node's mesh IPv4 address: the socket binds there */
  meshAddress: string
  /** the node's mesh IPv6 address: the IPv6 socket binds there; absent or unbindable: IPv4 only */
  meshAddress6?: string
  /** the mesh interface: never an egress */
  meshInterface: string
  /** applyRules puts rules in force (the firewall, through the data plane); undefined removes them */
  applyRules: (rules: SharedPortRules | undefined) => Promise<void>
  /** a control port to try first (the last one, so a restart does not change the table); 0 or absent: any */
  controlPort?: number
  /** interfaces() defaults to os.networkInterfaces(); tests pass a table */
  interfaces?: () => NodeJS.Dict<os.NetworkInterfaceInfo[]>
  /** onIpv6Unavailable hears why the IPv6 socket could not be bound (the port is then IPv4 only) */
  onIpv6Unavailable?: (e: Error) => void
}

/** SystemSharedPort is a SharedPort that also tells its rules and follows interface changes. */
export interface SystemSharedPort extends SharedPort {
  readonly meshAddress: string
  /** meshAddress6 is where the IPv6 socket is bound; undefined when the port is IPv4 only */
  readonly meshAddress6: string | undefined
  readonly controlPort: number
  /** rules are the shared-port rules as they should be in force now */
  rules: () => SharedPortRules
  /** refresh re-reads the egress addresses and, if they changed, puts them in force; true when they changed */
  refresh: () => Promise<boolean>
}

async function bindSocket (address: string, port: number): Promise<dgram.Socket> {
  const sock = dgram.createSocket({ type: isIP(address) === 6 ? 'udp6' : 'udp4' })
  await new Promise<void>((resolve, reject) => {
    sock.once('error', reject)
    sock.bind({ address, port, exclusive: true }, () => { sock.off('error', reject); resolve() })
  })
  return sock
}

/**
 * bindSockets binds the IPv4 control socket (on the wanted port if it is free, else any)
 * and, with a mesh IPv6 address, the IPv6 one on the same port. A host without IPv6 (or
 * whose mesh IPv6 address cannot be bound) keeps an IPv4-only port: `onIpv6Unavailable` hears why.
 */
async function bindSockets (init: SystemSharedPortInit): Promise<{ v4: dgram.Socket, v6?: dgram.Socket }> {
  let v4: dgram.Socket
  try {
    v4 = await bindSocket(init.meshAddress, init.controlPort ?? 0).catch(async () => await bindSocket(init.meshAddress, 0))
  } catch (e) {
    throw new WarrenError('shared_port_failed', `cannot bind the control socket on the mesh address ${init.meshAddress}: ${(e as Error).message} (is the mesh interface up with its address?)`, { status: 500, cause: e })
  }
  if (init.meshAddress6 === undefined) return { v4 }
  try {
    return { v4, v6: await bindSocket(init.meshAddress6, v4.address().port) }
  } catch (e) {
    init.onIpv6Unavailable?.(e as Error)
    return { v4 }
  }
}

/**
 * openSystemSharedPort binds the control sockets on the mesh addresses and puts the rules
 * in force. It throws WarrenError `shared_port_failed` when the IPv4 address is not (yet)
 * this host's or the rules are refused; an IPv6 socket that cannot be bound leaves the
 * port IPv4 only (`onIpv6Unavailable` hears why).
 */
export async function openSystemSharedPort (init: SystemSharedPortInit): Promise<SystemSharedPort> {
  const { v4, v6 } = await bindSockets(init)
  const sockets = v6 !== undefined ? [v4, v6] : [v4]
  const controlPort = v4.address().port
  const meshAddress6 = v6 !== undefined ? init.meshAddress6 : undefined
  const egressOf = (family: 4 | 6): Record<string, string> => egressAddresses({ meshInterface: init.meshInterface, ...(init.interfaces !== undefined ? { interfaces: init.interfaces } : {}) }, family)
  const egressNow = (): Pick<SharedPortRules, 'egress' | 'egress6'> => ({ egress: egressOf(4), ...(meshAddress6 !== undefined ? { egress6: egressOf(6) } : {}) })
  let egress = egressNow()
  // nft prints IPv6 addresses in their short form: the rules carry that form, so a read-back compares equal.
  const control6 = meshAddress6 !== undefined ? { controlAddress6: ipaddr.parse(meshAddress6).toString() } : {}
  const rules = (): SharedPortRules => ({ wgPort: init.wgPort, controlAddress: init.meshAddress, controlPort, ...control6, ...egress })
  const handlers = { stun: new Set<(p: SharedPortPacket) => void>(), control: new Set<(p: SharedPortPacket) => void>() }
  const sends = createSerialQueue()
  let closed = false

  for (const sock of sockets) {
    sock.on('message', (msg, rinfo) => {
      const kind = classifyWgPortPacket(msg)
      if (kind !== 'stun' && kind !== 'control') return
      const p: SharedPortPacket = { kind, data: new Uint8Array(msg.buffer, msg.byteOffset, msg.byteLength), from: { address: rinfo.address, port: rinfo.port } }
      for (const h of handlers[kind]) h(p)
    })
    // A send error (unreachable, say) must not end the daemon; the caller sees it from send().
    sock.on('error', () => undefined)
  }

  try {
    await init.applyRules(rules())
  } catch (e) {
    for (const sock of sockets) sock.close()
    throw new WarrenError('shared_port_failed', `cannot put the shared-port rules in force: ${(e as Error).message}`, { status: 500, cause: e })
  }

  /** socketFor picks the socket of the destination's family. */
  const socketFor = (to: UdpAddress): dgram.Socket => {
    if (isIP(to.address) !== 6) return v4
    if (v6 === undefined) throw new WarrenError('no_ipv6', `cannot send to ${to.address}: the shared port has no IPv6 socket (the host has no IPv6, or the mesh IPv6 address is missing)`, { status: 500 })
    return v6
  }
  const sendNow = async (sock: dgram.Socket, data: Uint8Array, to: UdpAddress): Promise<void> => await new Promise((resolve, reject) => {
    sock.send(data, to.port, to.address, err => { if (err !== null) reject(err); else resolve() })
  })

  return {
    wgPort: init.wgPort,
    meshAddress: init.meshAddress,
    meshAddress6,
    controlPort,
    rules,
    // Sends are serial: a TTL set for one packet must not apply to another's send.
    send: async (data, to, opts) => await sends.run(async () => {
      if (closed) throw new WarrenError('shared_port_closed', 'the shared port is closed', { status: 500 })
      const sock = socketFor(to)
      if (opts?.ttl === undefined) return await sendNow(sock, data, to)
      sock.setTTL(opts.ttl)
      try {
        await sendNow(sock, data, to)
      } finally {
        sock.setTTL(DEFAULT_TTL)
      }
    }),
    onPacket (kind, handler) {
      handlers[kind].add(handler)
      return () => { handlers[kind].delete(handler) }
    },
    async refresh () {
      const now = rules()
      const next = egressNow()
      if (closed || countEgressChanges(now, { ...now, ...next }) === 0) return false
      egress = next
      await init.applyRules(rules())
      return true
    },
    async close () {
      if (closed) return
      closed = true
      await sends.run(async () => undefined)
      await Promise.all(sockets.map(async sock => await new Promise<void>(resolve => sock.close(() => resolve()))))
    }
  }
}
