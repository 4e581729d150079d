import { InvalidArgumentError, type Command } from 'commander'
import { networkInterfaces } from 'node:os'
import { isIP } from 'node:net'
import { displayFingerprint, DEFAULT_DOMAIN, DEFAULT_STUN_PORT, LOGIN_CALLBACK_PATH, parseDuration, parseHostPort, WarrenError } from '@warren/protocol'
import { printLine } from '../output.js'
import { cliIo } from '../cli-io.js'
import { listenForStop } from '../stop-signal.js'
import { addOidcFlags, oidcOptions, type OidcFlags } from './controller-oidc.js'
import { applyConfigFile } from './controller-config.js'

interface ServeOpts extends OidcFlags {
  config?: string
  stateDir: string
  keyExpiry: string
  routerKeepalive: string
  listen: string
  domain: string
  tlsCert?: string
  tlsKey?: string
  metricsListen?: string
  stunPort: number
  relay: boolean
  tlsRelay: boolean
  relayPort: string
  relayHost?: string
  relayHost6?: string
  relayPorts: string
}

/** stunPort reads --stun-port: the first of two UDP ports, or 0 for none. */
function stunPort (v: string): number {
  const n = Number(v)
  if (!/^\d+$/.test(v) || n > 65534) throw new InvalidArgumentError('use a UDP port from 1 to 65534 (STUN also answers on the next one), or 0 to turn STUN off')
  return n
}

/** checkIpv6 refuses a dual-stack relay's IPv6 public host that is no IPv6 address. */
export function checkIpv6 (text: string, what: string): string {
  if (isIP(text) !== 6) throw new WarrenError('invalid_input', `${what} '${text}' must be an IPv6 address (nodes reach the relay over IPv6 there; the IPv4 address or a name goes in the other host flag)`, { field: what.replace(/^-+/, '') })
  return text
}

/** parsePortRange reads `first-last`. */
export function parsePortRange (text: string, what: string): { first: number, last: number } {
  const m = /^(\d{1,5})-(\d{1,5})$/.exec(text)
  const first = Number(m?.[1])
  const last = Number(m?.[2])
  if (m === null || first < 1 || last > 65535 || first >= last) {
    throw new WarrenError('invalid_input', `${what} '${text}' must be a port range like 40000-40999 (two or more ports between 1 and 65535)`, { field: what })
  }
  return { first, last }
}

/**
 * defaultRelayHost is where nodes reach the embedded relay when --relay-host is not given:
 * the --listen address when it names one, else this machine's first non-loopback IPv4.
 */
function defaultRelayHost (listen: string): string | undefined {
  const { host } = parseHostPort(listen, '--listen')
  if (host !== '' && host !== '0.0.0.0' && host !== '::') return host
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) if (a.family === 'IPv4' && !a.internal) return a.address
  }
  return undefined
}

/**
 * relayOptions decides whether `controller serve` runs the embedded relay: on by default
 * when this process can (root, nft), off with --no-relay; says why when it does not.
 */
async function relayOptions (opts: ServeOpts): Promise<{ relay?: { publicHost: string, publicHost6?: string, port: number, portRange: { first: number, last: number }, optional: boolean }, why?: string }> {
  if (!opts.relay) return { why: 'turned off with --no-relay or "relay": false' }
  const port = Number(opts.relayPort)
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new WarrenError('invalid_input', `--relay-port '${opts.relayPort}' must be a UDP port (0-65535)`, { field: 'relay-port' })
  const portRange = parsePortRange(opts.relayPorts, '--relay-ports')
  const publicHost6 = opts.relayHost6 === undefined ? undefined : checkIpv6(opts.relayHost6, '--relay-host6')
  const { relayUnsupportedReason } = await import('@warren/relay')
  const why = await relayUnsupportedReason()
  if (why !== undefined) return { why }
  const publicHost = opts.relayHost ?? defaultRelayHost(opts.listen)
  if (publicHost === undefined) return { why: 'no address for nodes to reach it; pass --relay-host' }
  return { relay: { publicHost, ...(publicHost6 !== undefined ? { publicHost6 } : {}), port, portRange, optional: true } }
}

/**
 * applyServeConfig fills `controller serve`'s options from --config FILE (flags on the
 * command line win), then checks that --state-dir and --listen are set by one or the other.
 */
async function applyServeConfig (cmd: Command): Promise<void> {
  const file = (cmd.opts() as ServeOpts).config
  if (file !== undefined) await applyConfigFile(cmd, file)
  for (const name of ['stateDir', 'listen'] as const) {
    if ((cmd.opts() as ServeOpts)[name] !== undefined) continue
    const flag = cmd.options.find(o => o.attributeName() === name)!.flags
    throw new WarrenError('usage', `required option '${flag}' not specified (pass it, or set "${name}" in the --config file)`, { field: name })
  }
}

/**
 * register adds `warren controller serve`. It prints the URL (with the real port when
 * listening on port 0) and the certificate fingerprint that clients pin, then runs
 * until SIGINT or SIGTERM and closes the store cleanly.
 */
export function register (program: Command): void {
  const controller = program.command('controller').description('run the Warren controller')

  const serve = controller.command('serve')
    .description('run the controller: API, map streaming and admin socket')
    .option('--config <file>', 'read options from this HuJSON file: keys are the long flags in camelCase ("stateDir", "oidcAllowedGroups": ["eng"], "relay": false); flags given here win')
    .option('--state-dir <dir>', 'where the controller keeps its store, TLS certificate and admin socket (required)')
    .option('--listen <host:port>', 'address to listen on, for example 0.0.0.0:8443 (port 0 picks a free one) (required)')
    .option('--domain <domain>', 'MagicDNS domain for node names', DEFAULT_DOMAIN)
    .option('--tls-cert <file>', 'PEM certificate to serve instead of the self-signed one')
    .option('--tls-key <file>', 'PEM private key for --tls-cert')
    .option('--stun-port <port>', 'answer STUN on this UDP port and the next one, on the listen address (0 turns STUN off); nodes learn their public mapping from it', stunPort, DEFAULT_STUN_PORT)
    .option('--metrics-listen <host:port>', 'serve Prometheus metrics over plain HTTP at http://HOST:PORT/metrics (off by default; no authentication, so use loopback or a private address)')
    .option('--no-relay', 'do not run the embedded kernel UDP relay (it runs by default when the controller runs as root with nft)')
    .option('--no-tls-relay', 'do not serve the embedded TLS relay on the HTTPS port (nodes then need a standalone TLS relay when UDP is blocked)')
    .option('--relay-port <port>', 'UDP port of the embedded relay (STUN and binds)', '3480')
    .option('--relay-host <host>', 'address nodes reach the embedded relay at (default: the --listen address, or this machine\'s first IPv4)')
    .option('--relay-host6 <address>', 'also an IPv6 address nodes reach the embedded relay at: it then listens on IPv4 and IPv6 and each relayed pair binds over the family both nodes have')
    .option('--relay-ports <first-last>', 'UDP ports the embedded relay allocates to relayed pairs (two per pair)', '40000-40999')
    .option('--key-expiry <duration>', 'how long a node key stays valid after a login or auth-key join (0 = never expires)', '180d')
    .option('--router-keepalive <duration>', 'ping interval of the map sessions of nodes serving routes: a router cut off is replaced within two (other nodes: 15s)', '3s')
  addOidcFlags(serve)
    .hook('preAction', async cmd => { await applyServeConfig(cmd) })
    .action(async (opts: ServeOpts) => {
      // Loaded here so that other commands do not pay for the controller's dependencies.
      const { startController } = await import('@warren/controller')
      const relay = await relayOptions(opts)
      const oidc = await oidcOptions(opts)
      const stop = listenForStop()
      const ctl = await startController({
        ...(opts.stunPort > 0 ? { stunPort: opts.stunPort } : {}),
        ...(relay.relay !== undefined ? { relay: relay.relay } : {}),
        ...(opts.tlsRelay ? {} : { tlsRelay: false as const }),
        stateDir: opts.stateDir,
        listen: opts.listen,
        domain: opts.domain,
        nodeKeyExpiry: opts.keyExpiry,
        map: { routerPingIntervalMs: routerKeepalive(opts.routerKeepalive) },
        ...(oidc !== undefined ? { oidc } : {}),
        ...(opts.tlsCert !== undefined ? { tlsCert: opts.tlsCert } : {}),
        ...(opts.tlsKey !== undefined ? { tlsKey: opts.tlsKey } : {}),
        ...(opts.metricsListen !== undefined ? { metricsListen: opts.metricsListen } : {})
      }).catch((e: unknown) => { stop.dispose(); throw e })
      printLine(`warren controller listening on ${ctl.url}`)
      printLine(`certificate fingerprint (SHA-256): ${displayFingerprint(ctl.fingerprint)}`)
      printLine(`admin socket: ${ctl.adminSocket}`)
      if (ctl.metricsUrl !== undefined) printLine(`metrics: ${ctl.metricsUrl}`)
      if (ctl.stun !== undefined) printLine(`STUN: UDP ${ctl.stun.ports.join(' and ')}`)
      if (ctl.relay !== undefined) printLine(`kernel UDP relay on ${ctl.relay.endpoint} (key ${ctl.relay.publicKey})`)
      else printLine(`kernel UDP relay: off (${relay.why ?? 'it could not start; see the log'})`)
      printLine(ctl.tlsRelay !== undefined ? `TLS relay on ${ctl.url}` : 'TLS relay: off (turned off with --no-tls-relay or "tlsRelay": false)')
      if (oidc !== undefined) printLine(`SSO login: ${oidc.issuer} (redirect URI ${oidc.redirectUrl ?? `${ctl.url}${LOGIN_CALLBACK_PATH}`}); nodes join with 'warren up --controller URL'`)
      printLine(`manage it here with: warren admin --state-dir ${opts.stateDir} users create NAME`)
      const signal = await stop.received
      cliIo().stderr.write(`warren: ${signal}: stopping the controller\n`)
      await ctl.close()
    })
}

/** routerKeepalive reads --router-keepalive: at least a second, so a busy router is not taken for a lost one. */
export function routerKeepalive (text: string): number {
  const ms = parseDuration(text, '--router-keepalive')
  if (ms < 1000) throw new WarrenError('bad_duration', `--router-keepalive '${text}' is too short: use at least 1s (for example 3s)`, { field: '--router-keepalive' })
  return ms
}
