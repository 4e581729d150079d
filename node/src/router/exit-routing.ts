import { checkInterfaceName } from './cidr.js'
import type { CommandRunner } from '../runner/index.js'
import {
  EXIT_FWMARK, EXIT_TABLE, desiredExitItems, exitCommands, planExit, routeItem, ruleItem,
  type ControlSocket, type ExitItem, type ExitRoutingConfig, type IpRouteJson, type IpRuleJson
} from './exit-routing-plan.js'

/** ExitRoutingRequest is what the engine asks for: the interface, bypass addresses, and whether the LAN stays local. */
export interface ExitRoutingRequest {
  interfaceName: string
  bypass: string[]
  allowLanAccess: boolean
  /** the daemon's control sockets, which keep the host's own routes like WireGuard */
  control?: ControlSocket[]
}

/**
 * ExitRouting is the adapter for a client's use of an exit node (see exit-routing-plan.ts).
 * `set` with a request makes the host send its internet traffic into the mesh interface;
 * `set(undefined)` and `close` put the host's routing back as it was. Both are safe to
 * repeat and change only what differs.
 */
export interface ExitRouting {
  set: (request: ExitRoutingRequest | undefined) => Promise<{ added: number, removed: number }>
  close: () => Promise<void>
}

/** ExitRoutingSystem is what the adapter reads and changes: the real one runs `ip` and `wg`; the fake keeps items in memory. */
export interface ExitRoutingSystem {
  /** items Warren added before (its priorities, its table) */
  current: () => Promise<ExitItem[]>
  /** lan lists the subnets directly connected by interfaces other than the mesh's */
  lan: (meshInterface: string) => Promise<string[]>
  apply: (commands: string[][]) => Promise<void>
  /** mark sets or clears the fwmark on WireGuard's own packets */
  mark: (interfaceName: string, on: boolean) => Promise<void>
}

/** createExitRouting makes the adapter over a system. */
export function createExitRouting (system: ExitRoutingSystem): ExitRouting {
  let marked: string | undefined
  /** clean: this process found none of Warren's items and added none since, so leaving needs no reading back */
  let clean = false
  async function set (request: ExitRoutingRequest | undefined): Promise<{ added: number, removed: number }> {
    if (request === undefined && clean) return { added: 0, removed: 0 }
    clean = false
    let desired: ExitItem[] = []
    if (request !== undefined) {
      checkInterfaceName(request.interfaceName)
      const config: ExitRoutingConfig = {
        interfaceName: request.interfaceName,
        bypass: request.bypass,
        lan: request.allowLanAccess ? await system.lan(request.interfaceName) : [],
        ...(request.control !== undefined ? { control: request.control } : {})
      }
      desired = desiredExitItems(config)
      // the mark first: WireGuard's packets must bypass the table before it exists (again
      // each time: an interface made anew after a crash has lost it)
      await system.mark(request.interfaceName, true)
      marked = request.interfaceName
    }
    const plan = planExit(await system.current(), desired)
    await system.apply(exitCommands(plan))
    if (request === undefined && marked !== undefined) { await system.mark(marked, false).catch(() => undefined); marked = undefined }
    clean = request === undefined
    return { added: plan.add.length, removed: plan.del.length }
  }
  return { set, close: async () => { await set(undefined) } }
}

/** createIpExitRoutingSystem is the real system: `ip -j` to read, `ip` and `wg` through the runner to change. */
export function createIpExitRoutingSystem (runner: CommandRunner): ExitRoutingSystem {
  const json = async <T>(argv: string[]): Promise<T[]> => {
    const r = await runner.run(argv, { allowFail: true })
    return r.exitCode === 0 && r.stdout.trim() !== '' ? JSON.parse(r.stdout) as T[] : []
  }
  return {
    async current () {
      const out: ExitItem[] = []
      for (const family of [4, 6] as const) {
        for (const r of await json<IpRuleJson>(['ip', '-j', `-${family}`, 'rule', 'show'])) { const i = ruleItem(family, r); if (i !== undefined) out.push(i) }
        for (const r of await json<IpRouteJson>(['ip', '-j', `-${family}`, 'route', 'show', 'table', String(EXIT_TABLE)])) { const i = routeItem(family, r); if (i !== undefined) out.push(i) }
      }
      return out
    },
    async lan (mesh) {
      const v4 = await json<IpRouteJson & { scope?: string }>(['ip', '-j', '-4', 'route', 'show', 'table', 'main', 'scope', 'link'])
      const v6 = await json<IpRouteJson>(['ip', '-j', '-6', 'route', 'show', 'table', 'main', 'proto', 'kernel'])
      return [...v4, ...v6].filter(r => r.dev !== mesh && r.dev !== 'lo' && r.dst !== undefined && r.dst !== 'default' && !r.dst.startsWith('fe80:'))
        .map(r => r.dst!)
    },
    async apply (commands) {
      // a rule or route already gone (or already there) is what the plan wanted
      for (const argv of commands) await runner.run(argv, { allowFail: argv.includes('del') })
    },
    async mark (ifname, on) {
      await runner.run(['wg', 'set', ifname, 'fwmark', on ? EXIT_FWMARK : 'off'], { allowFail: !on })
    }
  }
}
