/**
 * dns is MagicDNS: the record set built from the network map (records.ts), the DNS
 * server that answers mesh names and forwards the rest (server.ts), and the adapter that
 * points the host's resolver at it and back (resolver-config.ts).
 *
 * @example
 * ```ts
 * const store = createMeshRecordStore()
 * const host = createHostResolverConfigurator({ interfaceName: 'warren0', runner })
 * const { upstreams } = await host.apply(netmap.dns.domain)
 * const dns = createMagicDnsServer({ listen: [{ address: MAGIC_DNS_IPV4, port: 53 }], upstreams, records: store })
 * await dns.start()
 * store.update(netmap) // on every map or delta: answers follow at once
 * ```
 */
export * from './records.js'
export * from './server.js'
export * from './resolver-config.js'
