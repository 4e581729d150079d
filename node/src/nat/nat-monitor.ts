/**
 * NatMonitor keeps the node's view of its NAT current: it runs netcheck through the
 * shared port when the port opens, every `intervalMs` after (45 s: NAT mappings of an
 * idle port last about a minute or more on common routers, and WireGuard's keepalives
 * keep the one we report alive), and at once when the host's addresses change. The
 * WireGuard port's mapping it learns is a candidate endpoint the daemon sends the
 * controller (so peers may reach the port through the NAT); `onChange` says when it moved.
 */
import { WarrenError, type LocalNetcheck, type LocalNetcheckFamily } from '@warren/protocol'
import { resolveStunServers, runNetcheck, type Resolver } from './netcheck.js'
import type { SharedPort } from './types.js'

export interface NatMonitorInit {
  /** port is the shared WireGuard port, once the data plane opened it */
  port: () => SharedPort | undefined
  /** refreshPort re-reads the host's addresses for the shared port; true when they changed */
  refreshPort?: () => Promise<boolean>
  /** stunServers are the map's `nat.stun` entries */
  stunServers: () => readonly string[]
  /** controllerUrl is the URL the node joined with (host-less STUN entries are its host) */
  controllerUrl: () => string | undefined
  /** onChange is called when the endpoints to advertise (mappedEndpoints) changed */
  onChange: () => void
  /** a fresh netcheck this often (default 45 s) */
  intervalMs?: number
  /** how often addresses and the port are looked at (default 2 s) */
  tickMs?: number
  resolve?: Resolver
  /** timeoutMs per STUN server (default 3 s) */
  timeoutMs?: number
  logger?: { info: (o: object, msg: string) => void, warn: (o: object, msg: string) => void }
}

export interface NatMonitor {
  /** check runs a netcheck now (sharing one already running) and returns its report */
  check: () => Promise<LocalNetcheck>
  /** last is the latest report, if any */
  last: () => LocalNetcheck | undefined
  /**
   * mappedEndpoints are the WireGuard port's public mappings worth advertising: none when
   * the NAT is symmetric (the mapping toward a peer would differ) or UDP does not work
   */
  mappedEndpoints: () => string[]
  /** reset forgets the last report (after `warren down`) */
  reset: () => void
  close: () => void
}

/** worthSending picks one family's mappings if peers can use them: UDP works and the NAT is not symmetric. */
const worthSending = (v: LocalNetcheckFamily | undefined): string[] => v === undefined || !v.udp || v.endpointIndependent === false ? [] : v.mappings

/** advertised picks the mappings a report makes worth sending to peers, IPv4 and IPv6 each on its own verdict. */
function advertised (r: LocalNetcheck | undefined): string[] {
  return r === undefined ? [] : [...worthSending(r), ...worthSending(r.ipv6)]
}

/** createNatMonitor starts the monitor's timer; it runs nothing until a port and servers exist. */
export function createNatMonitor (init: NatMonitorInit): NatMonitor {
  const intervalMs = init.intervalMs ?? 45_000
  let last: LocalNetcheck | undefined
  let lastAt = 0
  let lastServers = ''
  let running: Promise<LocalNetcheck> | undefined
  let closed = false

  async function checkNow (): Promise<LocalNetcheck> {
    const port = init.port()
    if (port === undefined) throw new WarrenError('not_running', 'netcheck needs the node up with its mesh address: run `warren up` (the STUN requests leave from the WireGuard port)', { status: 409 })
    const entries = init.stunServers()
    if (entries.length === 0) throw new WarrenError('no_stun_servers', 'the controller lists no STUN servers; start it with STUN on (`warren controller serve --stun-port 3478`, the default)', { status: 409 })
    const servers = await resolveStunServers(entries, init.controllerUrl() ?? 'https://localhost', init.resolve)
    const report = await runNetcheck({ port, servers, ...(init.timeoutMs !== undefined ? { timeoutMs: init.timeoutMs } : {}) })
    const before = advertised(last).join(',')
    last = report
    lastAt = performance.now()
    lastServers = entries.join(',')
    init.logger?.info({ udp: report.udp, mappings: report.mappings, endpointIndependent: report.endpointIndependent, ipv6: report.ipv6 }, 'netcheck')
    if (advertised(report).join(',') !== before) init.onChange()
    return report
  }

  const check = async (): Promise<LocalNetcheck> => {
    running ??= checkNow().finally(() => { running = undefined })
    return await running
  }

  let ticking = false
  const tick = async (): Promise<void> => {
    if (ticking || closed || init.port() === undefined || init.stunServers().length === 0) return
    ticking = true
    try {
      const moved = await init.refreshPort?.() ?? false
      const due = last === undefined || performance.now() - lastAt >= intervalMs || init.stunServers().join(',') !== lastServers
      if (moved || due) await check()
    } catch (e) {
      init.logger?.warn({ err: (e as Error).message }, 'netcheck failed')
      lastAt = performance.now()
    } finally {
      ticking = false
    }
  }
  const timer = setInterval(() => { void tick() }, init.tickMs ?? 2000)
  timer.unref()

  return {
    check,
    last: () => last,
    mappedEndpoints: () => advertised(last),
    reset () {
      const had = advertised(last).length > 0
      last = undefined
      lastServers = ''
      if (had) init.onChange()
    },
    close () {
      closed = true
      clearInterval(timer)
    }
  }
}
