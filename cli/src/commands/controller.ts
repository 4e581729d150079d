import { InvalidArgumentError, type Command } from 'commander'
import { displayFingerprint, DEFAULT_DOMAIN, DEFAULT_STUN_PORT } from '@warren/protocol'
import { printLine } from '../output.js'
import { cliIo } from '../cli-io.js'

interface ServeOpts { stateDir: string, listen: string, domain: string, tlsCert?: string, tlsKey?: string, metricsListen?: string, stunPort: number }

/** stunPort reads --stun-port: the first of two UDP ports, or 0 for none. */
function stunPort (v: string): number {
  const n = Number(v)
  if (!/^\d+$/.test(v) || n > 65534) throw new InvalidArgumentError('use a UDP port from 1 to 65534 (STUN also answers on the next one), or 0 to turn STUN off')
  return n
}

/**
 * register adds `warren controller serve`. It prints the URL (with the real port when
 * listening on port 0) and the certificate fingerprint that clients pin, then runs
 * until SIGINT or SIGTERM and closes the store cleanly.
 */
export function register (program: Command): void {
  const controller = program.command('controller').description('run the Warren controller')

  controller.command('serve')
    .description('run the controller: API, map streaming and admin socket')
    .requiredOption('--state-dir <dir>', 'where the controller keeps its store, TLS certificate and admin socket')
    .requiredOption('--listen <host:port>', 'address to listen on, for example 0.0.0.0:8443 (port 0 picks a free one)')
    .option('--domain <domain>', 'MagicDNS domain for node names', DEFAULT_DOMAIN)
    .option('--tls-cert <file>', 'PEM certificate to serve instead of the self-signed one')
    .option('--tls-key <file>', 'PEM private key for --tls-cert')
    .option('--stun-port <port>', 'answer STUN on this UDP port and the next one, on the listen address (0 turns STUN off); nodes learn their public mapping from it', stunPort, DEFAULT_STUN_PORT)
    .option('--metrics-listen <host:port>', 'serve Prometheus metrics over plain HTTP at http://HOST:PORT/metrics (off by default; no authentication, so use loopback or a private address)')
    .action(async (opts: ServeOpts) => {
      // Loaded here so that other commands do not pay for the controller's dependencies.
      const { startController } = await import('@warren/controller')
      const ctl = await startController({
        ...(opts.stunPort > 0 ? { stunPort: opts.stunPort } : {}),
        stateDir: opts.stateDir,
        listen: opts.listen,
        domain: opts.domain,
        ...(opts.tlsCert !== undefined ? { tlsCert: opts.tlsCert } : {}),
        ...(opts.tlsKey !== undefined ? { tlsKey: opts.tlsKey } : {}),
        ...(opts.metricsListen !== undefined ? { metricsListen: opts.metricsListen } : {})
      })
      printLine(`warren controller listening on ${ctl.url}`)
      printLine(`certificate fingerprint (SHA-256): ${displayFingerprint(ctl.fingerprint)}`)
      printLine(`admin socket: ${ctl.adminSocket}`)
      if (ctl.metricsUrl !== undefined) printLine(`metrics: ${ctl.metricsUrl}`)
      if (ctl.stun !== undefined) printLine(`STUN: UDP ${ctl.stun.ports.join(' and ')}`)
      printLine(`manage it here with: warren admin --state-dir ${opts.stateDir} users create NAME`)
      const signal = await new Promise<NodeJS.Signals>(resolve => {
        process.once('SIGINT', resolve)
        process.once('SIGTERM', resolve)
      })
      cliIo().stderr.write(`warren: ${signal}: stopping the controller\n`)
      await ctl.close()
    })
}
