/**
 * server-types.ts holds the types the MagicDNS server shares with its listeners and its
 * forwarder, so that they need not import the server itself.
 */

/** ListenAddress is one address the server binds, on UDP and TCP alike. */
export interface ListenAddress {
  address: string
  /** 0 picks a free port, the same one for UDP and TCP */
  port: number
}

/** DnsLogger is the part of a pino logger the server uses. */
export interface DnsLogger {
  debug: (obj: object, msg?: string) => void
  warn: (obj: object, msg?: string) => void
}

/** MagicDnsStats counts what the server did since it started. */
export interface MagicDnsStats {
  queries: number
  answeredLocally: number
  forwarded: number
  servfail: number
  dropped: number
  overloaded: number
  inFlight: number
  tcpConnections: number
}

/** QueryHandler turns one query into its reply, or undefined to drop it. */
export type QueryHandler = (raw: Buffer, udp: boolean) => Promise<Buffer | undefined>
