import dgram from 'node:dgram'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { RANDOMIZE_CLIENT_PORT, WarrenError, describeDataPlane, hasAttr, type DataPlaneInfo } from '@warren/protocol'
import { createWireGuard, compareVersions, FAST_WIREGUARD_GO, type WireGuard } from '../wireguard/index.js'
import { createExitRouting, createForwarding, createIpExitRoutingSystem, createRouter, createSysctlAccess, type ExitRouting, type Forwarding, type Router } from '../router/index.js'
import { exitBypassHosts, resolveBypass } from './exit-bypass.js'
import { createNftablesFirewall } from '../firewall/index.js'
import { createEngine, type Firewall, type DnsConfigurator } from '../engine/index.js'
import type { CommandRunner } from '../runner/index.js'
import type { DataPlane, DataPlaneContext } from './data-plane.js'
import { createMagicDns } from './magic-dns.js'
import { openSystemSharedPort, type SystemSharedPort } from '../nat/shared-port.js'
import type { EngineLocal, SharedPortRules } from '../engine/types.js'
import type { Netmap, RoutingPrefs } from '@warren/protocol'

/** DataPlaneAdapters are the parts a data plane drives: real ones, or the adapters' fakes in tests. */
export interface DataPlaneAdapters {
  wireguard: WireGuard
  router: Router
  firewall: Firewall
  dns: DnsConfigurator & { close: () => Promise<void>, release: () => Promise<void> }
  /** forwarding serves subnet routes; without it the node serves none */
  forwarding?: Forwarding
  /** exitRouting uses an exit node; without it the node uses none */
  exitRouting?: ExitRouting
  /** runs `ping` for LocalAPI pings */
  runner: CommandRunner
  /** freePort picks the WireGuard port (default: freeUdpPort) */
  freePort?: (want: number) => Promise<number>
  /** sharedPort: false leaves the shared WireGuard port (control socket and its rules) out, for tests without a kernel */
  sharedPort?: false
}

/**
 * createEngineDataPlane is the DataPlane over an engine and its adapters. `release`
 * stops only the DNS server and the firewall's nft session: the interface, routes and
 * firewall table stay (fail-closed).
 */
export function createEngineDataPlane (adapters: DataPlaneAdapters, ctx: DataPlaneContext): DataPlane {
  const { wireguard, router, firewall, dns, runner, forwarding, exitRouting } = adapters
  const { interfaceName } = ctx
  const engine = createEngine({ wireguard, router, firewall, dns, ...(forwarding !== undefined ? { forwarding } : {}), ...(exitRouting !== undefined ? { exitRouting } : {}) })
  let listenPort: number | undefined
  let reported: DataPlaneInfo | undefined

  /** reportImplementation logs which WireGuard runs, once per change, and warns about a slow wireguard-go. */
  function reportImplementation (): void {
    const now = wireguard.implementation()
    if (now === undefined || JSON.stringify(now) === JSON.stringify(reported)) return
    reported = now
    ctx.logger.info({ dataPlane: now }, `WireGuard: ${describeDataPlane(now)}`)
    if (now.replaced === true) {
      ctx.logger.warn(`the running wireguard-go (${now.path ?? '?'}) was replaced on disk after it started: 'warren down' and 'warren up' start the new build`)
    }
    if (now.version !== undefined && compareVersions(now.version, FAST_WIREGUARD_GO) < 0) {
      ctx.logger.warn(`wireguard-go ${now.version} is several times slower than ${FAST_WIREGUARD_GO} or newer: install a newer wireguard-go (Debian bookworm: from bookworm-backports)`)
    }
  }

  /** the shared port's socket, and the rules the firewall is given for it */
  let shared: SystemSharedPort | undefined
  let rules: SharedPortRules | undefined
  /** the map last applied, so a path or rules change can re-apply it; none after down */
  let lastNetmap: Netmap | undefined
  /** the route settings last applied with it */
  let routing: RoutingPrefs | undefined
  /** the addresses an exit node must not carry (controller, relays), resolved with the map that names them */
  let exitBypass: string[] = []
  /** the WireGuard endpoint per peer that path selection chose */
  let chosen: ReadonlyMap<string, string> = new Map()
  const local = (port: number): EngineLocal => ({
    privateKey: ctx.privateKey,
    interfaceName,
    listenPort: port,
    endpoints: chosen,
    ...(rules !== undefined ? { sharedPort: rules } : {}),
    ...(routing !== undefined ? { routing } : {}),
    exitBypass
  })

  /** the control port is kept across restarts, so a restarted daemon finds its rules as they were (no rebuild) */
  const controlPortFile = join(ctx.stateDir, 'control-port')
  const savedControlPort = async (): Promise<number | undefined> => {
    const n = Number((await readFile(controlPortFile, 'utf8').catch(() => '')).trim())
    return Number.isInteger(n) && n > 0 && n < 65536 ? n : undefined
  }

  /**
   * openShared binds the control socket on the mesh address once it is on the interface
   * (again if the address or port moved) and gives the firewall its rules: with the next
   * engine apply when `early` (a restart, the interface still up: the first apply then
   * carries them and the table is not rebuilt), else at once. A failure leaves the mesh
   * working without it (no STUN, no probes); only a late one is worth a warning.
   */
  async function openShared (netmap: Netmap, port: number, early: boolean): Promise<void> {
    if (adapters.sharedPort === false) return
    // A port left IPv4 only (the IPv6 socket would not bind) is not reopened for that alone.
    if (shared !== undefined && shared.meshAddress === netmap.self.ipv4 && (shared.meshAddress6 ?? netmap.self.ipv6) === netmap.self.ipv6 && shared.wgPort === port) return
    const old = shared
    shared = undefined
    await old?.close()
    const controlPort = old?.controlPort ?? await savedControlPort()
    try {
      shared = await openSystemSharedPort({
        wgPort: port,
        meshAddress: netmap.self.ipv4,
        meshAddress6: netmap.self.ipv6,
        meshInterface: interfaceName,
        onIpv6Unavailable: e => ctx.logger.warn({ err: e.message }, 'the shared WireGuard port is IPv4 only: no IPv6 STUN or path probes'),
        ...(controlPort !== undefined ? { controlPort } : {}),
        applyRules: async r => {
          rules = r
          if (!early && lastNetmap !== undefined) await engine.apply(lastNetmap, local(port))
        }
      })
      await writeFile(controlPortFile, `${shared.controlPort}\n`).catch(() => undefined)
      ctx.logger.info({ controlPort: shared.controlPort, wgPort: port }, 'shared WireGuard port open')
    } catch (e) {
      rules = undefined
      if (!early) ctx.logger.warn({ err: (e as Error).message }, 'cannot share the WireGuard port: no STUN or path probes')
    }
  }

  async function closeShared (): Promise<void> {
    const s = shared
    shared = undefined
    rules = undefined
    await s?.close()
  }

  /**
   * choosePort keeps the port of an interface that survived a restart, else the wanted one
   * if free; a node the policy gives randomize-client-port takes any free port (0).
   */
  async function choosePort (netmap: Netmap): Promise<number> {
    const existing = await wireguard.status().catch(() => undefined)
    if (existing !== undefined && existing.listenPort > 0) return existing.listenPort
    return await (adapters.freePort ?? freeUdpPort)(hasAttr(netmap.self.attrs, RANDOMIZE_CLIENT_PORT) ? 0 : ctx.listenPort)
  }

  return {
    async apply (netmap, prefs, controller) {
      listenPort ??= await choosePort(netmap)
      lastNetmap = netmap
      routing = prefs
      exitBypass = prefs?.exitNode !== undefined ? await resolveBypass(exitBypassHosts(netmap, controller)) : []
      if (shared === undefined) await openShared(netmap, listenPort, true)
      const r = await engine.apply(netmap, local(listenPort))
      ctx.logger.debug({ ms: Math.round(r.durationMs), peers: r.peers, wireguard: r.wireguard, router: r.router }, 'engine applied')
      reportImplementation()

      await openShared(netmap, listenPort, false)
    },
    async setPeerEndpoints (endpoints) {
      chosen = new Map(endpoints)
      if (lastNetmap === undefined || listenPort === undefined) return
      const changes = await engine.applyWireGuard(lastNetmap, local(listenPort))
      if (changes.updated.length > 0) ctx.logger.info({ peers: changes.updated.length }, 'WireGuard endpoints moved to new paths')
    },
    sharedPort: () => shared,
    refreshSharedPort: async () => await (shared?.refresh() ?? false),
    peerStats: async () => (await wireguard.status().catch(() => undefined))?.peers ?? [],
    implementation: () => wireguard.implementation(),
    listenPort: () => listenPort ?? ctx.listenPort,
    ping: async address => await pingOnce(runner, address),
    async down () {
      await closeShared()
      lastNetmap = undefined
      await engine.close()
      listenPort = undefined
      reported = undefined
    },
    release: async () => {
      await closeShared()
      await firewall.release?.().catch(e => ctx.logger.warn({ err: (e as Error).message }, 'could not end the firewall\'s nft session'))
      await dns.release()
    }
  }
}

/**
 * createSystemDataPlane is the real data plane: the engine over wg/wireguard-go, ip,
 * nftables and MagicDNS, all through the one command runner.
 */
export async function createSystemDataPlane (ctx: DataPlaneContext): Promise<DataPlane> {
  const { runner, interfaceName } = ctx
  return createEngineDataPlane({
    runner,
    wireguard: createWireGuard({ runner, interfaceName, mode: ctx.wireguardMode, ...(ctx.wireguardGo !== undefined ? { wireguardGo: ctx.wireguardGo } : {}) }),
    router: createRouter({ runner, interfaceName }),
    firewall: createNftablesFirewall({ runner }),
    forwarding: createForwarding(createSysctlAccess(runner), { savePath: join(ctx.stateDir, 'forwarding-saved.json') }),
    exitRouting: createExitRouting(createIpExitRoutingSystem(runner)),
    dns: createMagicDns({
      runner,
      interfaceName,
      resolvConfBackupPath: join(ctx.stateDir, 'resolv.conf.warren-backup'),
      ...(ctx.resolvConfPath !== undefined ? { resolvConfPath: ctx.resolvConfPath } : {}),
      ...(ctx.magicDnsPort !== undefined ? { port: ctx.magicDnsPort } : {}),
      logger: ctx.logger.child({ part: 'dns' })
    })
  }, ctx)
}

/** freeUdpPort returns `want` if nothing on this host (namespace) uses it, else a free random port. */
export async function freeUdpPort (want: number): Promise<number> {
  const tryBind = async (port: number): Promise<number | undefined> => await new Promise(resolve => {
    const s = dgram.createSocket({ type: 'udp6', ipv6Only: false })
    s.once('error', () => { s.close(); resolve(undefined) })
    s.bind(port, () => { const p = s.address().port; s.close(); resolve(p) })
  }).catch(() => undefined) as number | undefined
  if (want > 0 && await tryBind(want) !== undefined) return want
  const any = await tryBind(0)
  if (any === undefined) throw new WarrenError('no_udp_port', 'cannot find a free UDP port for WireGuard', { status: 500 })
  return any
}

/** pingOnce runs one `ping -c 1 -W 2` and returns the round trip in milliseconds. */
export async function pingOnce (runner: CommandRunner, address: string): Promise<number> {
  const r = await runner.run(['ping', '-c', '1', '-W', '2', address], { allowFail: true })
  const m = /time[=<]([\d.]+) ?ms/.exec(r.stdout)
  if (r.exitCode !== 0 || m === null) throw new Error(r.exitCode === 1 || m === null ? 'no reply within 2 s' : r.stderr.trim() || `ping exited ${r.exitCode}`)
  return Number(m[1])
}
