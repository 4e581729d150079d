import { Option, type Command } from 'commander'
import { hostname } from 'node:os'
import { join } from 'node:path'
import { mkdir, chmod } from 'node:fs/promises'
import { parseCredential, parseHostPort, displayFingerprint, RELAY_LINK_PATH, WarrenError } from '@warren/protocol'
import type { RelayLogger } from '@warren/relay'
import { printLine } from '../output.js'
import { cliIo } from '../cli-io.js'
import { parsePortRange, checkIpv6 } from './controller.js'

interface ServeOpts {
  controller: string
  keyFile?: string
  apiKey?: string
  fingerprint?: string
  stateDir: string
  publicHost: string
  publicHost6?: string
  id?: string
  port: string
  ports: string
  listenHost?: string
  tlsListen?: string
  tlsCert?: string
  tlsKey?: string
  udpRelay: boolean
}

/** UDP_RELAY_FLAGS are the flags that only the kernel UDP relay uses. */
const UDP_RELAY_FLAGS = ['port', 'ports', 'listenHost', 'publicHost6'] as const

/** defaultRelayId is the host name cut to what an id may hold. */
function defaultRelayId (): string {
  return hostname().toLowerCase().replace(/[^a-z0-9_-]/g, '-').slice(0, 64) || 'relay'
}

/**
 * register adds `warren relay serve`: a standalone kernel UDP relay that links to its
 * controller with a relay-scoped API key (from a 0600 file or WARREN_RELAY_KEY, never the
 * command line) and relays only the pairs the controller grants; with --tls-listen also a
 * TLS relay, for the members and pairs the controller lists over the link. With
 * --no-udp-relay it runs only the TLS relay, which needs neither root nor nft.
 */
export function register (program: Command): void {
  const relay = program.command('relay').description('run a standalone Warren relay')
  relay.command('serve')
    .description('run a kernel UDP relay (needs root and nft) and/or a TLS relay on this host, driven by a controller')
    .requiredOption('--controller <url>', 'the controller\'s URL, for example https://ctl.example.com:8443')
    .option('--key-file <file>', 'file (mode 0600) holding the relay key from \'warren admin apikeys create --scope relay\'; its pin checks the controller\'s certificate (default: the key in WARREN_RELAY_KEY)')
    .addOption(new Option('--api-key <key>').hideHelp())
    .requiredOption('--state-dir <dir>', 'where the relay keeps its X25519 key (relay.key, 0600)')
    .requiredOption('--public-host <host>', 'the address nodes reach this relay at')
    .option('--fingerprint <sha256>', 'pin the controller certificate to this SHA-256 fingerprint (default: the pin inside the relay key)')
    .option('--id <id>', 'the relay\'s name in maps (default: this host\'s name)')
    .option('--port <port>', 'UDP control port (STUN)', '3480')
    .option('--ports <first-last>', 'UDP ports to allocate to relayed pairs (two per pair)', '40000-40999')
    .option('--public-host6 <address>', 'also an IPv6 address nodes reach this relay at: it then listens on IPv4 and IPv6 and each relayed pair binds over the family both nodes have')
    .option('--listen-host <address>', 'address to bind the UDP ports on (default: 0.0.0.0, or :: with --public-host6 or an IPv6 --public-host)')
    .option('--tls-listen <host:port>', 'also run a TLS relay (for nodes whose UDP is blocked) on this TCP address, for example :443 (every address, IPv4 and IPv6) or 0.0.0.0:443; nodes reach it at https://PUBLIC-HOST:PORT')
    .option('--tls-cert <file>', 'PEM certificate for the TLS relay instead of the self-signed one in the state dir (nodes pin its fingerprint either way)')
    .option('--tls-key <file>', 'PEM private key for --tls-cert')
    .option('--no-udp-relay', 'run only the TLS relay (--tls-listen): no kernel UDP relay, so neither root nor nft is needed')
    .action(async (opts: ServeOpts, cmd: Command) => {
      if (opts.apiKey !== undefined) {
        throw new WarrenError('invalid_input', '--api-key is not taken here: a key on the command line shows in \'ps\'; put a relay key (\'warren admin apikeys create --scope relay\') in a file, \'chmod 600\' it and pass --key-file FILE, or set WARREN_RELAY_KEY', { field: 'api-key' })
      }
      const port = Number(opts.port)
      if (!Number.isInteger(port) || port < 0 || port > 65535) throw new WarrenError('invalid_input', `--port '${opts.port}' must be a UDP port (0-65535)`, { field: 'port' })
      const portRange = parsePortRange(opts.ports, '--ports')
      const publicHost6 = opts.publicHost6 === undefined ? undefined : checkIpv6(opts.publicHost6, '--public-host6')
      const id = opts.id ?? defaultRelayId()
      if (!/^[A-Za-z0-9_-]{1,64}$/.test(id)) throw new WarrenError('invalid_input', `--id '${id}' may hold only letters, digits, '-' and '_' (1-64)`, { field: 'id' })
      if (opts.tlsListen === undefined && (opts.tlsCert !== undefined || opts.tlsKey !== undefined)) {
        throw new WarrenError('invalid_input', '--tls-cert and --tls-key are for the TLS relay; add --tls-listen HOST:PORT to run one', { field: 'tls-listen' })
      }
      const tlsListen = opts.tlsListen === undefined ? undefined : parseHostPort(opts.tlsListen, '--tls-listen')
      if (!opts.udpRelay) checkTlsOnly(tlsListen, UDP_RELAY_FLAGS.filter(f => cmd.getOptionValueSource(f) === 'cli'))
      const relayModule = await import('@warren/relay')
      const { startUdpRelay, loadOrCreateRelayKey, runControllerLink, relayUnsupportedReason, relayLinkKey, webSocketLinkSocket, RELAY_KEY_ENV } = relayModule
      const { createControllerTransport } = await import('@warren/sdk')
      const env = cliIo().env
      const linkKey = await relayLinkKey({ ...(opts.keyFile !== undefined ? { keyFile: opts.keyFile } : {}), env })
      // The commands the relay runs (nft, sysctl) need not inherit the key.
      delete env[RELAY_KEY_ENV]
      const fingerprint = opts.fingerprint ?? parseCredential(linkKey, 'api').fingerprint
      const why = opts.udpRelay ? await relayUnsupportedReason() : undefined
      if (why !== undefined) throw new WarrenError('relay_unsupported', `${why} (a TLS-only relay needs neither: --no-udp-relay --tls-listen HOST:PORT)`)
      await mkdir(opts.stateDir, { recursive: true, mode: 0o700 })
      await chmod(opts.stateDir, 0o700)
      const say = (o: object, m?: string): void => { cliIo().stderr.write(`warren relay: ${m ?? ''} ${JSON.stringify(o)}\n`) }
      const log: RelayLogger = { info: say, warn: say, debug: () => {} }
      const key = await loadOrCreateRelayKey(join(opts.stateDir, 'relay.key'))
      const r = opts.udpRelay
        ? await startUdpRelay({
          key,
          port,
          publicHost: opts.publicHost,
          ...(publicHost6 !== undefined ? { publicHost6 } : {}),
          ...(opts.listenHost !== undefined ? { listenHost: opts.listenHost } : {}),
          portRange
        })
        : undefined
      const tls = tlsListen === undefined ? undefined : await startTlsRelay(relayModule, opts, tlsListen, log).catch(async (e: unknown) => { await r?.close(); throw e })
      const transport = createControllerTransport({ url: opts.controller, ...(fingerprint !== undefined ? { fingerprint } : {}) })
      const link = runControllerLink({
        ...(r !== undefined ? { relay: r } : {}),
        publicKey: key.publicKey,
        id,
        openSocket: () => webSocketLinkSocket(transport.webSocket(RELAY_LINK_PATH.slice(1), { headers: { authorization: `Bearer ${linkKey}` } })),
        ...(tls !== undefined ? { tls: { url: tls.server.url, fingerprint: tls.server.fingerprint, relay: tls.server.relay, members: tls.members } } : {}),
        log
      })
      printLine(`warren relay '${id}' ${r !== undefined ? `on ${r.endpoint}` : 'with no UDP relay'} (key ${key.publicKey}), linking to ${transport.url}`)
      if (tls !== undefined) printLine(`TLS relay on ${tls.server.url} (certificate fingerprint ${displayFingerprint(tls.server.fingerprint)})`)
      const signal = await new Promise<NodeJS.Signals>(resolve => {
        process.once('SIGINT', resolve)
        process.once('SIGTERM', resolve)
      })
      cliIo().stderr.write(`warren: ${signal}: stopping the relay\n`)
      link.close()
      transport.close()
      await tls?.server.close()
      await r?.close()
    })
}

/** checkTlsOnly refuses a --no-udp-relay run that would serve nothing, or that was given UDP relay flags. */
function checkTlsOnly (tlsListen: unknown, udpFlags: readonly string[]): void {
  if (tlsListen === undefined) throw new WarrenError('invalid_input', '--no-udp-relay leaves nothing to run; add --tls-listen HOST:PORT for a TLS-only relay', { field: 'no-udp-relay' })
  const flag = udpFlags[0]?.replace(/[A-Z]/g, c => `-${c.toLowerCase()}`)
  if (flag !== undefined) throw new WarrenError('invalid_input', `--${flag} is for the kernel UDP relay, which --no-udp-relay turns off; drop one of them`, { field: flag })
}

/**
 * startTlsRelay serves the TLS relay with the operator's certificate or a self-signed one
 * kept in the state dir; its members start empty and come from the controller.
 */
async function startTlsRelay (relay: typeof import('@warren/relay'), opts: ServeOpts, listen: { host: string, port: number }, log: RelayLogger) {
  const cert = await relay.loadOrCreateTls({
    stateDir: opts.stateDir,
    host: opts.publicHost,
    commonName: 'warren-relay',
    ...(opts.tlsCert !== undefined ? { certFile: opts.tlsCert } : {}),
    ...(opts.tlsKey !== undefined ? { keyFile: opts.tlsKey } : {})
  })
  const members = relay.createRelayMembers()
  const server = await relay.startTlsRelayServer({ host: listen.host, port: listen.port, publicHost: opts.publicHost, tls: cert, members, log })
  return { server, members }
}
