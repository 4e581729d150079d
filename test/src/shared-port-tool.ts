import { fileURLToPath } from 'node:url'
import { createCommandRunner, createNftablesFirewall, openSystemSharedPort } from '@warren/node'

/**
 * shared-port-tool runs the node's real SharedPort inside a namespace, for tests:
 * `node shared-port-tool.js WGPORT MESHADDR MESHIF TABLE [SEND...]` puts the shared-port
 * rules in nftables table TABLE (inet), binds the control socket on MESHADDR, prints
 * `ready CONTROLPORT EGRESSJSON`, sends each SEND (`HOST:PORT:TTL:HEX`, TTL 0 for the
 * default) in order, then prints `got KIND HEX FROM` for every packet it receives.
 */
export const SHARED_PORT_TOOL_ARGV = [process.execPath, compiledSelf()]

function compiledSelf (): string {
  const here = fileURLToPath(import.meta.url)
  return here.endsWith('.ts') ? here.replace(/src\/shared-port-tool\.ts$/, 'dist/src/shared-port-tool.js') : here
}

async function main (args: string[]): Promise<void> {
  const [wgPort, meshAddress, meshInterface, table, ...sends] = args
  if (table === undefined) throw new Error('usage: shared-port-tool WGPORT MESHADDR MESHIF TABLE [HOST:PORT:TTL:HEX...]')
  const firewall = createNftablesFirewall({ runner: createCommandRunner(), table })
  const port = await openSystemSharedPort({
    wgPort: Number(wgPort),
    meshAddress: meshAddress!,
    meshInterface: meshInterface!,
    applyRules: async rules => await firewall.set([], { interfaceName: meshInterface!, ...(rules !== undefined ? { sharedPort: rules } : {}) })
  })
  for (const kind of ['stun', 'control'] as const) {
    port.onPacket(kind, p => process.stdout.write(`got ${p.kind} ${Buffer.from(p.data).toString('hex')} ${p.from.address}:${p.from.port}\n`))
  }
  process.stdout.write(`ready ${port.controlPort} ${JSON.stringify(port.rules().egress)}\n`)
  for (const s of sends) {
    const [host, p, ttl, hex] = s.split(':')
    await port.send(Buffer.from(hex!, 'hex'), { address: host!, port: Number(p) }, Number(ttl) > 0 ? { ttl: Number(ttl) } : undefined)
  }
  process.once('SIGTERM', () => { void port.close().then(async () => await firewall.release()).then(() => process.exit(0)) })
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main(process.argv.slice(2))
