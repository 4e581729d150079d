import { createServer, type Server } from 'node:https'
import { formatHostPort, WarrenError, TLS_RELAY_PATH, type ErrorBody } from '@warren/protocol'
import { createTlsRelay, type TlsRelay, type TlsRelayMembers, type TlsRelayOptions } from './tls-relay.js'
import type { ServerTls } from './server-tls.js'
import type { RelayLogger } from './udp-relay.js'

export interface TlsRelayServerOptions {
  /** address and TCP port to listen on (port 0 picks one); '' is every address of both families (IPv4 alone where IPv6 is off) */
  host: string
  port: number
  /** the host nodes reach the relay at, for its URL (default: `host`) */
  publicHost?: string
  /** the certificate served; nodes pin its fingerprint */
  tls: Pick<ServerTls, 'cert' | 'key' | 'fingerprint'>
  members: TlsRelayMembers
  relay?: TlsRelayOptions
  log?: RelayLogger
}

/** TlsRelayServer is a TLS relay on an HTTPS port of its own (a standalone relay's). */
export interface TlsRelayServer {
  /** https://publicHost:port, as maps list it */
  readonly url: string
  /** SHA-256 of the certificate, 64 lowercase hex digits */
  readonly fingerprint: string
  readonly relay: TlsRelay
  close: () => Promise<void>
}

/**
 * startTlsRelayServer serves the TLS relay at TLS_RELAY_PATH on its own HTTPS listener.
 * Every other request is answered 404 in the API's error shape.
 */
export async function startTlsRelayServer (opts: TlsRelayServerOptions): Promise<TlsRelayServer> {
  let server: Server
  try {
    server = createServer({ cert: opts.tls.cert, key: opts.tls.key }, (_req, res) => {
      const body: ErrorBody = { error: { code: 'not_found', message: `this is a Warren TLS relay; nodes open it with an upgrade at ${TLS_RELAY_PATH}` } }
      res.writeHead(404, { 'content-type': 'application/json; charset=utf-8' }).end(JSON.stringify(body))
    })
  } catch (e) {
    throw new WarrenError('bad_tls_file', `the TLS relay cannot use its certificate and key (${(e as Error).message}); give a matching PEM pair with --tls-cert and --tls-key`, { cause: e })
  }
  const relay = createTlsRelay({ members: opts.members, ...(opts.log !== undefined ? { log: opts.log } : {}) }, opts.relay)
  relay.attach(server)
  const listen = async (host: string): Promise<void> => {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(opts.port, host, () => { server.off('error', reject); resolve() })
    })
  }
  try {
    // '::' takes IPv4 too (as IPv4-mapped addresses); a host without IPv6 refuses it.
    if (opts.host !== '') await listen(opts.host)
    else await listen('::').catch(async (e: NodeJS.ErrnoException) => { if (e.code === 'EAFNOSUPPORT' || e.code === 'EADDRNOTAVAIL') await listen('0.0.0.0'); else throw e })
  } catch (e) {
    await relay.close()
    throw Object.assign(new Error(`cannot serve the TLS relay on ${formatHostPort(opts.host, opts.port)}: ${(e as Error).message}`), { code: 'listen_failed' })
  }
  const address = server.address()
  const port = typeof address === 'object' && address !== null ? address.port : opts.port
  return {
    url: `https://${formatHostPort(opts.publicHost ?? opts.host, port)}`,
    fingerprint: opts.tls.fingerprint,
    relay,
    async close () {
      await relay.close()
      server.closeAllConnections()
      await new Promise<void>(resolve => server.close(() => resolve()))
    }
  }
}
