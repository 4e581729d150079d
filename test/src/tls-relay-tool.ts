import { fileURLToPath } from 'node:url'
import { openStateStore, createTlsRelayClient, type TlsRelayCarrier } from '@warren/node'
import { createControllerTransport } from '@warren/sdk/transport'

/**
 * tls-relay-tool runs a node's TLS relay client as a process of its own, next to a
 * daemon that was brought up (it reads the daemon's state dir: machine key, controller
 * URL and pin), until the path manager drives the client from inside the daemon:
 *
 *   node tls-relay-tool.js --state-dir DIR --wg-port PORT [--carrier auto|stream|websocket] --peer WGKEY...
 *
 * It prints `endpoint WGKEY 127.0.0.1:PORT` per peer (the WireGuard endpoint to set for
 * it), `relay up` / `relay down` as the connection comes and goes, and its counters every
 * second as `stats {json}`.
 */
export const TLS_RELAY_TOOL_ARGV = [process.execPath, fileURLToPath(import.meta.url)]

function arg (args: string[], name: string): string | undefined {
  const i = args.indexOf(name)
  return i >= 0 ? args[i + 1] : undefined
}

export async function runTlsRelayTool (args: string[]): Promise<void> {
  const stateDir = arg(args, '--state-dir')
  const wgPort = Number(arg(args, '--wg-port'))
  const peers = args.flatMap((a, i) => a === '--peer' && args[i + 1] !== undefined ? [args[i + 1]!] : [])
  if (stateDir === undefined || !Number.isInteger(wgPort) || wgPort < 1 || wgPort > 65535) {
    process.stderr.write('usage: tls-relay-tool --state-dir DIR --wg-port PORT [--carrier auto|stream|websocket] --peer WGKEY...\n')
    process.exitCode = 2
    return
  }
  const store = await openStateStore(stateDir)
  const login = await store.readLogin()
  if (login === undefined) throw new Error(`no login in ${stateDir}: run 'warren up' for this node first`)
  const keys = await store.keys()
  const transport = createControllerTransport({ url: login.controller, ...(login.fingerprint !== undefined ? { fingerprint: login.fingerprint } : {}) })
  const client = createTlsRelayClient({
    transport,
    machineKey: keys.machine,
    wgPort,
    carrier: (arg(args, '--carrier') ?? 'auto') as TlsRelayCarrier,
    backoff: { minMs: 200, maxMs: 2000 },
    onState: up => process.stdout.write(`relay ${up ? 'up' : 'down'}\n`)
  })
  for (const p of peers) process.stdout.write(`endpoint ${p} ${await client.endpoint(p)}\n`)
  const timer = setInterval(() => process.stdout.write(`stats ${JSON.stringify(client.stats())}\n`), 1000)
  const stop = (): void => {
    clearInterval(timer)
    void client.close().then(() => { transport.close() })
  }
  process.once('SIGTERM', stop)
  process.once('SIGINT', stop)
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await runTlsRelayTool(process.argv.slice(2))
