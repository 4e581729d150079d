import type { Command } from 'commander'
import { displayFingerprint, DEFAULT_DOMAIN } from '@warren/protocol'
import { printLine } from '../output.js'
import { cliIo } from '../cli-io.js'
import { listenForStop } from '../stop-signal.js'

interface ServeOpts { stateDir: string, listen: string, domain: string, tlsCert?: string, tlsKey?: string, metricsListen?: string }

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
    .option('--metrics-listen <host:port>', 'serve Prometheus metrics over plain HTTP at http://HOST:PORT/metrics (off by default; no authentication, so use loopback or a private address)')
    .action(async (opts: ServeOpts) => {
      // Loaded here so that other commands do not pay for the controller's dependencies.
      const { startController } = await import('@warren/controller')
      const stop = listenForStop()
      const ctl = await startController({
        stateDir: opts.stateDir,
        listen: opts.listen,
        domain: opts.domain,
        ...(opts.tlsCert !== undefined ? { tlsCert: opts.tlsCert } : {}),
        ...(opts.tlsKey !== undefined ? { tlsKey: opts.tlsKey } : {}),
        ...(opts.metricsListen !== undefined ? { metricsListen: opts.metricsListen } : {})
      }).catch((e: unknown) => { stop.dispose(); throw e })
      printLine(`warren controller listening on ${ctl.url}`)
      printLine(`certificate fingerprint (SHA-256): ${displayFingerprint(ctl.fingerprint)}`)
      printLine(`admin socket: ${ctl.adminSocket}`)
      if (ctl.metricsUrl !== undefined) printLine(`metrics: ${ctl.metricsUrl}`)
      printLine(`manage it here with: warren admin --state-dir ${opts.stateDir} users create NAME`)
      const signal = await stop.received
      cliIo().stderr.write(`warren: ${signal}: stopping the controller\n`)
      await ctl.close()
    })
}
