/**
 * netcheck asks every STUN server of the map, through the shared WireGuard port, how that
 * port is seen from outside: its public mapping, whether the mapping is the same toward
 * every server (endpoint-independent: peers can reach it) or not (symmetric: a relay is
 * needed), whether UDP works at all, and the round trip to each server. IPv4 and IPv6
 * are told apart: a server named by a host name is asked at one address of each family
 * it has, and each family gets its own verdict.
 */
import { randomBytes } from 'node:crypto'
import { lookup } from 'node:dns/promises'
import { isIP } from 'node:net'
import { encodeStunBindingRequest, formatHostPort, parseHostPort, parseStunBindingResponse, stunServerAddress, type LocalNetcheck, type LocalNetcheckFamily, type LocalNetcheckServer } from '@warren/protocol'
import type { SharedPort } from './types.js'

/** StunTarget is one STUN server of the map, resolved (or why it could not be). */
export interface StunTarget {
  /** the map's entry, as reported */
  server: string
  address?: { host: string, port: number }
  error?: string
}

/** Resolver turns a host name into its addresses, IPv4 and IPv6 (tests pass a table). */
export type Resolver = (host: string) => Promise<string[]>

const resolveAll: Resolver = async host => (await lookup(host, { all: true })).map(a => a.address)

/**
 * resolveStunServers reads the map's `nat.stun` entries (host-less ones are the host of
 * the controller URL) and resolves names: one target per address family the name has
 * (its first address of each), so IPv4 and IPv6 are both checked where both exist.
 */
export async function resolveStunServers (entries: readonly string[], controllerUrl: string, resolve: Resolver = resolveAll): Promise<StunTarget[]> {
  const perEntry = await Promise.all(entries.map(async (server): Promise<StunTarget[]> => {
    try {
      const { host, port } = stunServerAddress(server, controllerUrl)
      if (isIP(host) !== 0) return [{ server, address: { host, port } }]
      const found = await resolve(host)
      const picked = [4, 6].flatMap(family => found.find(a => isIP(a) === family) ?? [])
      if (picked.length === 0) return [{ server, error: `${host} has no address` }]
      return picked.map(a => ({ server, address: { host: a, port } }))
    } catch (e) {
      return [{ server, error: (e as Error).message }]
    }
  }))
  return perEntry.flat()
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

/** isIpv6Server says whether a server was asked over IPv6 (its resolved address is one). */
const isIpv6Server = (s: LocalNetcheckServer): boolean => s.address !== undefined && isIP(parseHostPort(s.address, 'STUN server').host) === 6

/** verdict sums up what one family's servers saw. */
function verdict (servers: LocalNetcheckServer[]): LocalNetcheckFamily {
  const seen = servers.flatMap(s => s.mapped !== undefined ? [s.mapped] : [])
  const mappings = [...new Set(seen)]
  return { udp: seen.length > 0, mappings, ...(seen.length >= 2 ? { endpointIndependent: mappings.length === 1 } : {}) }
}

/**
 * runNetcheck asks every server at once and sums up what they saw: the report's top-level
 * verdict is over the IPv4 servers, `ipv6` (present when any server was asked over IPv6)
 * over the IPv6 ones.
 */
export async function runNetcheck (opts: NetcheckOptions): Promise<LocalNetcheck> {
  const timeoutMs = opts.timeoutMs ?? 3000
  const retryMs = opts.retryMs ?? 500
  const servers = await Promise.all(opts.servers.map(async s =>
    s.address === undefined ? { server: s.server, error: s.error ?? 'not resolved' } : await askStun(opts.port, s, timeoutMs, retryMs)))
  const v6 = servers.filter(isIpv6Server)
  return {
    ...verdict(servers.filter(s => !isIpv6Server(s))),
    ...(v6.length > 0 ? { ipv6: verdict(v6) } : {}),
    wgPort: opts.port.wgPort,
    servers,
    checkedAt: (opts.now ?? (() => new Date()))().toISOString()
  }
}
