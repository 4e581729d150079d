import { Option, type Command } from 'commander'
import { WarrenError } from '@warren/protocol'
import type { DaemonInit } from '@warren/node'
import { listenForStop } from '../stop-signal.js'
import { cliIo } from '../cli-io.js'
import { DEFAULT_SOCKET_PATH } from '@warren/sdk'

interface RunOptions {
  stateDir: string
  socket: string
  interface: string
  wireguard: DaemonInit['wireguardMode']
  wireguardGo?: string
  metricsListen?: string
  listenPort?: string
  logLevel: string
}

/** INTERFACE_NAME is what Linux allows for a link name: 1-15 characters, no slash or space. */
const INTERFACE_NAME = /^[A-Za-z0-9_.-]{1,15}$/

/** register adds `warren node run`: the daemon (warrend) in the foreground. */
export function register (program: Command): void {
  const node = program.commands.find(c => c.name() === 'node') ?? program.command('node').description('run the node daemon')
  node.command('run')
    .description('run the Warren daemon in the foreground (as root); stop it with Ctrl-C, which leaves the mesh interface and firewall in place')
    .option('--state-dir <dir>', 'where keys, login and the last network map are kept (not the controller\'s state dir)', '/var/lib/warren')
    .addOption(new Option('--socket <path>', 'LocalAPI socket').default(DEFAULT_SOCKET_PATH).env('WARREN_SOCKET'))
    .option('--interface <name>', 'WireGuard interface name (unique per daemon on a host)', 'warren0')
    .addOption(new Option('--wireguard <mode>', 'auto (kernel WireGuard when it works, else wireguard-go), kernel, or userspace (wireguard-go)').choices(['auto', 'kernel', 'userspace']).default('auto'))
    .addOption(new Option('--wireguard-go <path>', 'the wireguard-go program to run (default: the newest one in PATH, /usr/bin, /usr/local/bin or /usr/sbin)').env('WARREN_WIREGUARD_GO'))
    .option('--listen-port <port>', 'WireGuard UDP port to try first (default 41641; a random one is used if it is taken)')
    .option('--metrics-listen <host:port>', 'also serve Prometheus metrics on HOST:PORT (they are always at GET /metrics on the socket)')
    .option('--log-level <level>', 'pino log level: debug, info, warn or error', 'info')
    .action(async (opts: RunOptions) => {
      if (!INTERFACE_NAME.test(opts.interface)) {
        throw new WarrenError('usage', `--interface '${opts.interface}' is not a valid interface name: use 1-15 letters, digits, '.', '_' or '-'`)
      }
      const port = opts.listenPort === undefined ? undefined : Number(opts.listenPort)
      if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65535)) throw new WarrenError('usage', `--listen-port '${opts.listenPort}' must be a port number (0-65535)`)
      // Loaded here, not at the top: every other command starts faster without the daemon's code.
      const { startDaemon, createDaemonLogger, pathTimingsFromEnv } = await import('@warren/node')
      // Tests shorten path timings through the environment (see PATH_TIMINGS_ENV); checked before anything starts.
      const timings = pathTimingsFromEnv(cliIo().env)
      const logger = createDaemonLogger({ level: opts.logLevel })
      const stop = listenForStop()
      const daemon = await startDaemon({
        stateDir: opts.stateDir,
        socketPath: opts.socket,
        interfaceName: opts.interface,
        wireguardMode: opts.wireguard,
        ...(opts.wireguardGo !== undefined && opts.wireguardGo !== '' ? { wireguardGo: opts.wireguardGo } : {}),
        ...(port !== undefined ? { listenPort: port } : {}),
        logger,
        ...(opts.metricsListen !== undefined ? { metricsListen: opts.metricsListen } : {}),
        ...(timings !== undefined ? { paths: { timings } } : {})
      }).catch((e: unknown) => { stop.dispose(); throw e })
      // Stopping the process keeps the data plane (fail-closed); only 'warren down' removes it.
      logger.info({ signal: await stop.received }, 'stopping')
      await daemon.close().catch((e: Error) => { logger.error({ err: e.message }, 'stopping failed') })
    })
}
