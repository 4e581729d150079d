import type { Command } from 'commander'
import { openLocal, localCommand, type LocalOptions } from './local-common.js'
import { printJson, printLine } from '../output.js'

/** register adds `warren ping PEER`: one echo over the mesh, with latency and path. */
export function register (program: Command): void {
  localCommand(program, 'ping <peer>', 'ping a peer over the mesh (by name, full name or mesh address)')
    .option('--json', 'print JSON for scripts')
    .action(async (peer: string, opts: LocalOptions) => {
      const r = await openLocal(opts).ping(peer)
      if (opts.json === true) printJson(r)
      else printLine(`pong from ${r.peer} (${r.address}) ${r.direct ? `via ${r.endpoint ?? 'direct path'}` : 'via relay'} in ${r.latencyMs.toFixed(2)} ms`)
    })
}
