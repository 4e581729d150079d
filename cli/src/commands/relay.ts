import type { Command } from 'commander'
import { hostname } from 'node:os'
import { join } from 'node:path'
import { mkdir, chmod } from 'node:fs/promises'
import { parseCredential, RELAY_LINK_PATH, WarrenError } from '@warren/protocol'
import { printLine } from '../output.js'
import { cliIo } from '../cli-io.js'
import { parsePortRange } from './controller.js'

interface ServeOpts {
  controller: string
  apiKey: string
  fingerprint?: string
  stateDir: string
  publicHost: string
  id?: string
  port: string
  ports: string
  listenHost: string
}

/** defaultRelayId is the host name cut to what an id may hold. */
function defaultRelayId (): string {
  return hostname().toLowerCase().replace(/[^a-z0-9_-]/g, '-').slice(0, 64) || 'relay'
}

/**
 * register adds `warren relay serve`: a standalone kernel UDP relay that links to its
 * controller with an admin API key and relays only the pairs the controller grants.
 */
export function register (program: Command): void {
  const relay = program.command('relay').description('run a standalone Warren relay')
  relay.command('serve')
    .description('run a kernel UDP relay on this host, driven by a controller (needs root and nft)')
    .requiredOption('--controller <url>', 'the controller\'s URL, for example https://ctl.example.com:8443')
    .requiredOption('--api-key <key>', 'an admin API key (wrnapi-...) that lets this relay join; its pin checks the controller\'s certificate')
    .requiredOption('--state-dir <dir>', 'where the relay keeps its X25519 key (relay.key, 0600)')
    .requiredOption('--public-host <host>', 'the address nodes reach this relay at')
    .option('--fingerprint <sha256>', 'pin the controller certificate to this SHA-256 fingerprint (default: the pin inside the API key)')
    .option('--id <id>', 'the relay\'s name in maps (default: this host\'s name)')
    .option('--port <port>', 'UDP control port (STUN)', '3480')
    .option('--ports <first-last>', 'UDP ports to allocate to relayed pairs (two per pair)', '40000-40999')
    .option('--listen-host <address>', 'address to bind the UDP ports on', '0.0.0.0')
    .action(async (opts: ServeOpts) => {
      const port = Number(opts.port)
      if (!Number.isInteger(port) || port < 0 || port > 65535) throw new WarrenError('invalid_input', `--port '${opts.port}' must be a UDP port (0-65535)`, { field: 'port' })
      const portRange = parsePortRange(opts.ports, '--ports')
      const id = opts.id ?? defaultRelayId()
      if (!/^[A-Za-z0-9_-]{1,64}$/.test(id)) throw new WarrenError('invalid_input', `--id '${id}' may hold only letters, digits, '-' and '_' (1-64)`, { field: 'id' })
      const fingerprint = opts.fingerprint ?? parseCredential(opts.apiKey, 'api').fingerprint
      const [{ startUdpRelay, loadOrCreateRelayKey, runControllerLink, relayUnsupportedReason }, { createControllerTransport }] = await Promise.all([import('@warren/relay'), import('@warren/sdk')])
      const why = await relayUnsupportedReason()
      if (why !== undefined) throw new WarrenError('relay_unsupported', why)
      await mkdir(opts.stateDir, { recursive: true, mode: 0o700 })
      await chmod(opts.stateDir, 0o700)
      const r = await startUdpRelay({ key: await loadOrCreateRelayKey(join(opts.stateDir, 'relay.key')), port, publicHost: opts.publicHost, listenHost: opts.listenHost, portRange })
      const transport = createControllerTransport({ url: opts.controller, ...(fingerprint !== undefined ? { fingerprint } : {}) })
      const link = runControllerLink({
        relay: r,
        id,
        openSocket: () => {
          const ws = transport.webSocket(RELAY_LINK_PATH.slice(1), { headers: { authorization: `Bearer ${opts.apiKey}` } })
          let lastError = ''
          ws.on('error', (e: Error) => { lastError = e.message })
          return {
            send: text => ws.send(text),
            close: () => ws.close(),
            onOpen: h => { ws.on('open', h) },
            onMessage: h => { ws.on('message', (d: Buffer) => h(d.toString('utf8'))) },
            onClose: h => { ws.on('close', (code: number) => h(lastError !== '' ? lastError : `closed with ${code}`)) }
          }
        },
        log: {
          info: (o, m) => cliIo().stderr.write(`warren relay: ${m ?? ''} ${JSON.stringify(o)}\n`),
          warn: (o, m) => cliIo().stderr.write(`warren relay: ${m ?? ''} ${JSON.stringify(o)}\n`),
          debug: () => {}
        }
      })
      printLine(`warren relay '${id}' on ${r.endpoint} (key ${r.publicKey}), linking to ${transport.url}`)
      const signal = await new Promise<NodeJS.Signals>(resolve => {
        process.once('SIGINT', resolve)
        process.once('SIGTERM', resolve)
      })
      cliIo().stderr.write(`warren: ${signal}: stopping the relay\n`)
      link.close()
      transport.close()
      await r.close()
    })
}
