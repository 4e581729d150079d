/**
 * netcheck asks every STUN server of the map, through the shared WireGuard port, how that
 * port is seen from outside: its public mapping, whether the mapping is the same toward
 * every server (endpoint-independent: peers can reach it) or not (symmetric: a relay is
 * needed), whether UDP works at all, and the round trip to each server.
 */
import { randomBytes } from 'node:crypto'
import { lookup } from 'node:dns/promises'
import { isIP } from 'node:net'
import { encodeStunBindingRequest, formatHostPort, parseStunBindingResponse, stunServerAddress, type LocalNetcheck, type LocalNetcheckServer } from '@warren/protocol'
import type { SharedPort } from './types.js'

/** StunTarget is one STUN server of the map, resolved (or why it could not be). */
export interface StunTarget {
  /** the map's entry, as reported */
  server: string
  address?: { host: string, port: number }
  error?: string
}

/** Resolver turns a host name into an IPv4 address (tests pass a table). */
export type Resolver = (host: string) => Promise<string>

const resolveIpv4: Resolver = async host => (await lookup(host, { family: 4 })).address

/**
 * resolveStunServers reads the map's `nat.stun` entries (host-less ones are the host of
 * the controller URL) and resolves names to IPv4: the control socket speaks IPv4 only.
 */
export async function resolveStunServers (entries: readonly string[], controllerUrl: string, resolve: Resolver = resolveIpv4): Promise<StunTarget[]> {
  return await Promise.all(entries.map(async (server): Promise<StunTarget> => {
    try {
      const { host, port } = stunServerAddress(server, controllerUrl)
      if (isIP(host) === 6) return { server, error: 'IPv6 STUN servers are not used yet (the shared port is IPv4)' }
      return { server, address: { host: isIP(host) === 4 ? host : await resolve(host), port } }
    } catch (e) {
      return { server, error: (e as Error).message }
    }
  }))
}

export interface NetcheckOptions {
  port: SharedPort
  servers: StunTarget[]
  /** give up on a server after this long (default 3 s) */
  timeoutMs?: number
  /** send another request this often until answered (default 500 ms): a lost packet is not a verdict */
  retryMs?: number
  now?: () => Date
}

/** askStun sends binding requests to one server until one is answered or time is up. */
async function askStun (port: SharedPort, target: StunTarget, timeoutMs: number, retryMs: number): Promise<LocalNetcheckServer> {
  const to = target.address!
  const out: LocalNetcheckServer = { server: target.server, address: formatHostPort(to.host, to.port) }
  const sentAt = new Map<string, number>()
  return await new Promise(resolve => {
    let retry: NodeJS.Timeout | undefined
    let lastError: string | undefined
    const finish = (r: LocalNetcheckServer): void => {
      clearInterval(retry)
      clearTimeout(deadline)
      off()
      resolve(r)
    }
    const off = port.onPacket('stun', p => {
      const answer = parseStunBindingResponse(p.data)
      if (answer === undefined) return
      const at = sentAt.get(Buffer.from(answer.txid).toString('hex'))
      if (at === undefined) return
      finish({ ...out, mapped: formatHostPort(answer.mapped.address, answer.mapped.port), latencyMs: Math.round((performance.now() - at) * 100) / 100 })
    })
    const send = (): void => {
      const txid = randomBytes(12)
      sentAt.set(txid.toString('hex'), performance.now())
      port.send(encodeStunBindingRequest(txid), { address: to.host, port: to.port }).catch((e: Error) => { lastError = e.message })
    }
    const deadline = setTimeout(() => finish({ ...out, error: lastError !== undefined ? `cannot send: ${lastError}` : `no answer within ${timeoutMs} ms` }), timeoutMs)
    retry = setInterval(send, retryMs)
    send()
  })
}

/** runNetcheck asks every server at once and sums up what they saw. */
export async function runNetcheck (opts: NetcheckOptions): Promise<LocalNetcheck> {
  const timeoutMs = opts.timeoutMs ?? 3000
  const retryMs = opts.retryMs ?? 500
  const servers = await Promise.all(opts.servers.map(async s =>
    s.address === undefined ? { server: s.server, error: s.error ?? 'not resolved' } : await askStun(opts.port, s, timeoutMs, retryMs)))
  const seen = servers.flatMap(s => s.mapped !== undefined ? [s.mapped] : [])
  const mappings = [...new Set(seen)]
  const report: LocalNetcheck = {
    udp: seen.length > 0,
    mappings,
    wgPort: opts.port.wgPort,
    servers,
    checkedAt: (opts.now ?? (() => new Date()))().toISOString()
  }
  if (seen.length >= 2) report.endpointIndependent = mappings.length === 1
  return report
}
