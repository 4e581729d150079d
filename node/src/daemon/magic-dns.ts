import { MAGIC_DNS_IPV4, MAGIC_DNS_IPV6, type Netmap } from '@warren/protocol'
import type { CommandRunner } from '../runner/index.js'
import type { DnsConfigurator } from '../engine/types.js'
import { createMeshRecordStore, createMagicDnsServer, createHostResolverConfigurator, type MagicDnsServer, type DnsLogger, type ListenAddress } from '../dns/index.js'

export interface MagicDnsInit {
  runner: CommandRunner
  interfaceName: string
  /** where the host's original resolv.conf is kept: per daemon, so daemons in different namespaces never share it */
  resolvConfBackupPath: string
  resolvConfPath?: string
  /** the port MagicDNS listens on (53 unless a test says otherwise) */
  port?: number
  logger?: DnsLogger
}

/** MagicDns is the daemon's DNS part: answers follow the map; `release` keeps host settings, `close` restores them. */
export interface MagicDns extends DnsConfigurator {
  close: () => Promise<void>
  /** release stops the server but leaves the addresses and resolver settings (a daemon restart picks them up) */
  release: () => Promise<void>
  /** listening lists the bound addresses, empty before the first map */
  listening: () => ListenAddress[]
}

/** LOOPBACK_ADDRESSES put MagicDNS's well-known addresses on `lo`, where every local query reaches them. */
const LOOPBACK_ADDRESSES = [
  { family: 4, cidr: `${MAGIC_DNS_IPV4}/32`, address: MAGIC_DNS_IPV4 },
  { family: 6, cidr: `${MAGIC_DNS_IPV6}/128`, address: MAGIC_DNS_IPV6 }
] as const

/**
 * createMagicDns wires the record store, the DNS server on 100.100.100.100 and its IPv6
 * twin, and the host resolver. The addresses go on `lo` rather than the mesh interface:
 * the router owns the mesh interface's address list, and lo is up wherever queries start.
 */
export function createMagicDns (init: MagicDnsInit): MagicDns {
  const { runner } = init
  const store = createMeshRecordStore()
  const resolver = createHostResolverConfigurator({
    interfaceName: init.interfaceName,
    runner,
    backupPath: init.resolvConfBackupPath,
    ...(init.resolvConfPath !== undefined ? { resolvConfPath: init.resolvConfPath } : {})
  })
  let server: MagicDnsServer | undefined
  let bound: ListenAddress[] = []
  let resolverDomain: string | undefined

  async function start (): Promise<void> {
    await runner.run(['ip', 'link', 'set', 'dev', 'lo', 'up'])
    const listen: ListenAddress[] = []
    for (const a of LOOPBACK_ADDRESSES) {
      const args = a.family === 6 ? ['ip', '-6', 'addr', 'replace', a.cidr, 'dev', 'lo', 'nodad'] : ['ip', 'addr', 'replace', a.cidr, 'dev', 'lo']
      const r = await runner.run(args, { allowFail: a.family === 6 })
      // A host without IPv6 still gets MagicDNS on IPv4.
      if (r.exitCode === 0) listen.push({ address: a.address, port: init.port ?? 53 })
      else init.logger?.warn({ stderr: r.stderr.trim() }, 'cannot add the MagicDNS IPv6 address to lo; serving IPv4 only')
    }
    const s = createMagicDnsServer({ listen, records: store, ...(init.logger !== undefined ? { logger: init.logger } : {}) })
    bound = await s.start()
    server = s
  }

  async function stopServer (): Promise<void> {
    const s = server
    server = undefined
    bound = []
    await s?.close()
  }

  return {
    async set (netmap: Netmap) {
      store.update(netmap)
      if (server === undefined) await start()
      const domain = netmap.dns.domain
      if (netmap.dns.magicDns && resolverDomain !== domain) {
        const { upstreams } = await resolver.apply(domain)
        server!.setUpstreams(upstreams)
        resolverDomain = domain
      }
    },
    async close () {
      const errors: unknown[] = []
      await stopServer().catch(e => errors.push(e))
      await resolver.restore().catch(e => errors.push(e))
      resolverDomain = undefined
      store.clear()
      for (const a of LOOPBACK_ADDRESSES) {
        await runner.run(['ip', ...(a.family === 6 ? ['-6'] : []), 'addr', 'del', a.cidr, 'dev', 'lo'], { allowFail: true })
      }
      if (errors.length > 0) throw errors[0]
    },
    release: stopServer,
    listening: () => bound
  }
}
