import type { SoaAnswer, StringAnswer } from 'dns-packet'
import { DEFAULT_DOMAIN, isDnsLabel, type Netmap } from '@warren/protocol'

/**
 * records.ts turns a network map into the MagicDNS record set: A/AAAA for
 * `<name>.<domain>` of this node and its peers, PTR for their mesh addresses, and
 * authority over the mesh domain and the mesh reverse zones, so that a name the map
 * does not hold (including a peer this node may not see) gets NXDOMAIN instead of
 * being forwarded. Pure: no I/O. Answers are built on lookup, so a record set costs
 * one map entry and one small object per host (plus an address index, built on the
 * first PTR query).
 */

/** MeshHost is one node's name and mesh addresses as MagicDNS serves them. */
export interface MeshHost {
  /** lowercase `<name>.<domain>`, no trailing dot */
  readonly fqdn: string
  /** absent when the map's address is not IPv4 */
  readonly ipv4?: string
  /** as the map gave it; AAAA and PTR use it only if it parses */
  readonly ipv6?: string
}

/** MeshAnswer is what MagicDNS answers itself; NODATA is NOERROR with no answers. */
export interface MeshAnswer {
  readonly rcode: 'NOERROR' | 'NXDOMAIN'
  readonly answers: MeshRecord[]
  readonly authorities: SoaAnswer[]
}

/** MeshRecord is one answer record: A, AAAA or PTR, or the SOA of the apex. */
export type MeshRecord = StringAnswer | SoaAnswer

/** MeshRecords is one immutable record set; a new map builds a new one. */
export interface MeshRecords {
  /** lowercase mesh domain without trailing dot, such as `warren.internal` */
  readonly domain: string
  readonly serial: number
  /** number of hosts with a name */
  readonly size: number
  /** hosts left out because their name is not a DNS label */
  readonly skipped: number
  /**
   * resolve answers `qname`/`qtype` (`A`, `PTR`, `UNKNOWN_65`...) when the name is in
   * the mesh domain or a mesh reverse zone, and returns undefined when the name is not
   * ours, so the caller forwards it.
   */
  resolve: (qname: string, qtype: string) => MeshAnswer | undefined
  /** host finds a node by name (case-insensitive, trailing dot tolerated) */
  host: (name: string) => MeshHost | undefined
}

/** MeshRecordsProvider hands the server the record set in force right now. */
export interface MeshRecordsProvider {
  current: () => MeshRecords | undefined
}

/** MeshRecordStore holds the current record set and swaps it whole on each map. */
export interface MeshRecordStore extends MeshRecordsProvider {
  /**
   * update builds the record set of `netmap` and replaces the current one in one step.
   * With MagicDNS switched off in the map there is none: every name is forwarded.
   */
  update: (netmap: Netmap) => MeshRecords | undefined
  /** clear drops the record set (after `down`): every name is forwarded again */
  clear: () => void
}

/** MeshRecordOptions tune TTLs; defaults suit answers that follow the map live. */
export interface MeshRecordOptions {
  /** TTL of A/AAAA/PTR answers in seconds; short, because answers follow the map live */
  ttl?: number
  /** TTL of negative answers (SOA minimum) in seconds */
  negativeTtl?: number
  serial?: number
}

const DEFAULT_TTL = 30
const DEFAULT_NEGATIVE_TTL = 5
const NO_ANSWER = Object.freeze([]) as unknown as never[]

/** normalizeName lowercases a DNS name and drops one trailing dot. */
export function normalizeName (name: string): string {
  const n = name.toLowerCase()
  return n.endsWith('.') ? n.slice(0, -1) : n
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/

const hexValue = (c: number): number =>
  c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : c >= 65 && c <= 70 ? c - 55 : -1

/**
 * ipv6Nibbles expands an IPv6 address to its 32 lowercase hex digits, or undefined. It
 * scans characters instead of going through protocol's parseIpAddress, since every map
 * checks and a PTR index expands every mesh address: 10,000 addresses took 7-9 ms here,
 * against 85-155 ms through ipaddr.js.
 */
export function ipv6Nibbles (addr: string): string | undefined {
  const n = addr.length
  if (n < 2 || n > 39) return undefined
  const groups: number[] = []
  let gapAt = -1
  let i = 0
  if (addr.charCodeAt(0) === 58) {
    if (addr.charCodeAt(1) !== 58) return undefined
    gapAt = 0
    i = 2
  }
  while (i < n) {
    let value = 0
    let digits = 0
    for (let d = hexValue(addr.charCodeAt(i)); d >= 0 && i < n; d = hexValue(addr.charCodeAt(++i))) {
      value = value * 16 + d
      digits++
    }
    if (digits === 0 || digits > 4) return undefined
    groups.push(value)
    if (i === n) break
    if (addr.charCodeAt(i++) !== 58 || i === n) return undefined
    if (addr.charCodeAt(i) === 58) {
      if (gapAt >= 0) return undefined
      gapAt = groups.length
      i++
    }
  }
  if (gapAt < 0 ? groups.length !== 8 : groups.length > 7) return undefined
  const zeros = '0000'.repeat(8 - groups.length)
  let out = ''
  for (let g = 0; g < groups.length; g++) {
    if (g === gapAt) out += zeros
    out += groups[g]!.toString(16).padStart(4, '0')
  }
  return gapAt === groups.length ? out + zeros : out
}

/** reverseName gives the in-addr.arpa or ip6.arpa name of an address (for PTR queries). */
export function reverseName (addr: string): string {
  if (IPV4.test(addr)) return addr.split('.').reverse().join('.') + '.in-addr.arpa'
  const nibbles = ipv6Nibbles(addr)
  if (nibbles === undefined) throw new Error(`'${addr}' is not an IP address`)
  return [...nibbles].reverse().join('.') + '.ip6.arpa'
}

/** isMeshV4SecondOctet says which second octets of 100.x.0.0 belong to 100.64.0.0/10. */
const isMeshV4SecondOctet = (n: number): boolean => n >= 64 && n <= 127

/** ULA_PREFIX_NIBBLES is the length of a mesh IPv6 prefix (/48) in hex digits. */
const ULA_PREFIX_NIBBLES = 12

/** buildMeshRecords builds the record set of one network map. */
export function buildMeshRecords (netmap: Netmap, opts: MeshRecordOptions = {}): MeshRecords {
  const ttl = opts.ttl ?? DEFAULT_TTL
  const negativeTtl = opts.negativeTtl ?? DEFAULT_NEGATIVE_TTL
  const serial = opts.serial ?? 1
  const domain = normalizeName(netmap.dns.domain) || DEFAULT_DOMAIN
  const suffix = '.' + domain

  const byName = new Map<string, MeshHost>()
  let skipped = 0

  const add = (name: string, ipv4: string, ipv6: string): void => {
    const label = name.toLowerCase()
    if (!isDnsLabel(label)) { skipped++; return }
    const fqdn = label + suffix
    // The first holder of a name keeps it: self comes first, then peers in map order.
    if (byName.has(fqdn)) { skipped++; return }
    const v4 = IPV4.test(ipv4) ? ipv4 : undefined
    const host: MeshHost = v4 === undefined ? { fqdn, ipv6 } : { fqdn, ipv4: v4, ipv6 }
    byName.set(fqdn, host)
  }
  add(netmap.self.name, netmap.self.ipv4, netmap.self.ipv6)
  for (const p of netmap.peers) add(p.name, p.ipv4, p.ipv6)

  /**
   * reverse is the address index for PTR, built on the first reverse query: most record
   * sets never see one, and expanding 10,000 IPv6 addresses is most of the build time.
   */
  let reverse: { byV4: Map<string, MeshHost>, byV6: Map<string, MeshHost>, v6Prefixes: Set<string> } | undefined
  const reverseIndex = (): NonNullable<typeof reverse> => {
    if (reverse !== undefined) return reverse
    const idx = { byV4: new Map<string, MeshHost>(), byV6: new Map<string, MeshHost>(), v6Prefixes: new Set<string>() }
    for (const host of byName.values()) {
      if (host.ipv4 !== undefined && !idx.byV4.has(host.ipv4)) idx.byV4.set(host.ipv4, host)
      const nibbles = host.ipv6 === undefined ? undefined : ipv6Nibbles(host.ipv6)
      if (nibbles === undefined) continue
      if (!idx.byV6.has(nibbles)) idx.byV6.set(nibbles, host)
      idx.v6Prefixes.add(nibbles.slice(0, ULA_PREFIX_NIBBLES))
    }
    reverse = idx
    return idx
  }
  const validV6 = (host: MeshHost): string | undefined =>
    host.ipv6 !== undefined && ipv6Nibbles(host.ipv6) !== undefined ? host.ipv6 : undefined

  const soa = (zone: string): SoaAnswer => ({
    name: zone,
    type: 'SOA',
    ttl: negativeTtl,
    data: { mname: zone, rname: 'hostmaster.' + domain, serial, refresh: 3600, retry: 600, expire: 86400, minimum: negativeTtl }
  })
  const nodata = (zone: string): MeshAnswer => ({ rcode: 'NOERROR', answers: NO_ANSWER, authorities: [soa(zone)] })
  const nxdomain = (zone: string): MeshAnswer => ({ rcode: 'NXDOMAIN', answers: NO_ANSWER, authorities: [soa(zone)] })

  const hostAnswer = (qname: string, qtype: string, host: MeshHost): MeshAnswer => {
    const answers: MeshRecord[] = []
    if ((qtype === 'A' || qtype === 'ANY') && host.ipv4 !== undefined) answers.push({ name: qname, type: 'A', ttl, data: host.ipv4 })
    const v6 = qtype === 'AAAA' || qtype === 'ANY' ? validV6(host) : undefined
    if (v6 !== undefined) answers.push({ name: qname, type: 'AAAA', ttl, data: v6 })
    return answers.length === 0 ? nodata(domain) : { rcode: 'NOERROR', answers, authorities: NO_ANSWER }
  }

  const ptrAnswer = (qname: string, qtype: string, host: MeshHost | undefined, zone: string): MeshAnswer => {
    if (host === undefined) return nxdomain(zone)
    if (qtype !== 'PTR' && qtype !== 'ANY') return nodata(zone)
    return { rcode: 'NOERROR', answers: [{ name: qname, type: 'PTR', ttl, data: host.fqdn }], authorities: NO_ANSWER }
  }

  const resolveV4Reverse = (qname: string, qtype: string, labels: string[]): MeshAnswer | undefined => {
    // labels: reversed octets, e.g. ['2','0','64','100'] for 100.64.0.2
    if (labels.length < 2 || labels[labels.length - 1] !== '100') return undefined
    const second = labels[labels.length - 2]!
    if (!/^\d{1,3}$/.test(second) || !isMeshV4SecondOctet(Number(second)) || String(Number(second)) !== second) return undefined
    const zone = `${second}.100.in-addr.arpa`
    if (labels.length < 4) return nodata(zone)
    const addr = [...labels].reverse().join('.')
    if (labels.length > 4 || !IPV4.test(addr)) return nxdomain(zone)
    return ptrAnswer(qname, qtype, reverseIndex().byV4.get(addr), zone)
  }

  const resolveV6Reverse = (qname: string, qtype: string, labels: string[]): MeshAnswer | undefined => {
    // labels: reversed nibbles, least significant first
    if (labels.length < ULA_PREFIX_NIBBLES || !labels.every(l => /^[0-9a-f]$/.test(l))) return undefined
    const nibbles = [...labels].reverse().join('')
    const prefix = nibbles.slice(0, ULA_PREFIX_NIBBLES)
    if (!reverseIndex().v6Prefixes.has(prefix)) return undefined
    const zone = [...prefix].reverse().join('.') + '.ip6.arpa'
    if (nibbles.length < 32) return nodata(zone)
    if (nibbles.length > 32) return nxdomain(zone)
    return ptrAnswer(qname, qtype, reverseIndex().byV6.get(nibbles), zone)
  }

  const resolve = (qname: string, qtype: string): MeshAnswer | undefined => {
    const n = normalizeName(qname)
    if (n === domain) {
      if (qtype === 'SOA') return { rcode: 'NOERROR', answers: [{ ...soa(qname), ttl }], authorities: NO_ANSWER }
      return nodata(domain)
    }
    if (n.endsWith(suffix)) {
      const host = byName.get(n)
      return host === undefined ? nxdomain(domain) : hostAnswer(qname, qtype, host)
    }
    if (n.endsWith('.in-addr.arpa')) return resolveV4Reverse(qname, qtype, n.slice(0, -'.in-addr.arpa'.length).split('.'))
    if (n.endsWith('.ip6.arpa')) return resolveV6Reverse(qname, qtype, n.slice(0, -'.ip6.arpa'.length).split('.'))
    return undefined
  }

  return {
    domain,
    serial,
    size: byName.size,
    skipped,
    resolve,
    host: (name: string) => byName.get(normalizeName(name))
  }
}

/** createMeshRecordStore makes the holder the server reads; `update` swaps the whole set. */
export function createMeshRecordStore (opts: MeshRecordOptions = {}): MeshRecordStore {
  let records: MeshRecords | undefined
  let serial = opts.serial ?? 0
  return {
    current: () => records,
    update (netmap: Netmap) {
      serial = (serial + 1) >>> 0
      records = netmap.dns.magicDns ? buildMeshRecords(netmap, { ...opts, serial }) : undefined
      return records
    },
    clear () { records = undefined }
  }
}
