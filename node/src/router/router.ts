import { WarrenError } from '@warren/protocol'
import type { CommandRunner } from '../runner/command-runner.js'
import { checkInterfaceName, normalizeAddress, normalizeCidr } from './cidr.js'
import type { Router, RouterConfig, RouterChanges } from './types.js'
import { checkRouterConfig, planRouter, linkCommands, routeCommands, routerChanges, type LinkState } from './router-plan.js'

interface IpAddrJson { flags?: string[], mtu?: number, addr_info?: Array<{ family: string, local: string, prefixlen: number, scope?: string }> }
interface IpRouteJson { dst: string, protocol?: string }

/** readLinkState reads what Warren manages on a link, or undefined when it does not exist. */
export async function readLinkState (runner: CommandRunner, ifname: string): Promise<LinkState | undefined> {
  const r = await runner.run(['ip', '-j', 'addr', 'show', 'dev', ifname], { allowFail: true })
  if (r.exitCode !== 0) return undefined
  const link = (JSON.parse(r.stdout) as IpAddrJson[])[0] ?? {}
  const routes: string[] = []
  for (const [fam, any] of [[[], '0.0.0.0/0'], [['-6'], '::/0']] as Array<[string[], string]>) {
    const out = await runner.run(['ip', ...fam, '-j', 'route', 'show', 'dev', ifname])
    // Kernel routes (for the link's own addresses, fe80::/64) come and go with the link.
    for (const rt of JSON.parse(out.stdout === '' ? '[]' : out.stdout) as IpRouteJson[]) {
      if (rt.protocol !== 'kernel') routes.push(normalizeCidr(rt.dst === 'default' ? any : rt.dst))
    }
  }
  return {
    up: (link.flags ?? []).includes('UP'),
    mtu: link.mtu ?? 0,
    // Link-local addresses belong to the kernel; Warren manages only global ones.
    addresses: (link.addr_info ?? []).filter(a => a.scope === 'global').map(a => normalizeAddress(`${a.local}/${a.prefixlen}`)).sort(),
    routes: routes.sort()
  }
}

/** createRouter returns the real adapter, which reconciles with `ip` through the runner. */
export function createRouter (opts: { runner: CommandRunner, interfaceName: string }): Router {
  checkInterfaceName(opts.interfaceName)
  const { runner, interfaceName } = opts
  let lastSet: RouterConfig | undefined

  async function state (): Promise<LinkState> {
    const s = await readLinkState(runner, interfaceName)
    if (s === undefined) {
      throw new WarrenError('interface_missing', `interface ${interfaceName} does not exist: bring WireGuard up before its addresses and routes`, { status: 409 })
    }
    return s
  }

  async function set (desired: RouterConfig): Promise<RouterChanges> {
    const want = checkRouterConfig(desired)
    if (want.interfaceName !== interfaceName) {
      throw new WarrenError('bad_config', `router config is for interface '${want.interfaceName}' but this router manages '${interfaceName}'`, { field: 'interfaceName' })
    }
    const plan = planRouter(await state(), want)
    for (const argv of linkCommands(interfaceName, plan)) await runner.run(argv)
    // Removing a link's last IPv4 address makes the kernel drop the link's IPv4 routes:
    // plan the routes against what is there now.
    const routePlan = plan.delAddresses.length > 0 ? planRouter(await state(), want) : plan
    for (const argv of routeCommands(interfaceName, routePlan)) await runner.run(argv)
    lastSet = want
    return { ...routerChanges(plan), routesAdded: routePlan.addRoutes, routesRemoved: routePlan.delRoutes }
  }

  return {
    interfaceName,
    async up () {
      const s = await state()
      if (!s.up) await runner.run(['ip', 'link', 'set', 'dev', interfaceName, 'up'])
    },
    set,
    async close () {
      const s = await readLinkState(runner, interfaceName)
      if (s === undefined) return
      // What this process set; after a restart, everything Warren manages on its interface.
      const owned = lastSet ?? { addresses: s.addresses, routes: s.routes }
      const plan = planRouter(s, { interfaceName, addresses: s.addresses.filter(a => !owned.addresses.includes(a)), routes: s.routes.filter(r => !owned.routes.includes(r)) })
      const removals = { ...plan, bringUp: false }
      for (const argv of [...routeCommands(interfaceName, removals), ...linkCommands(interfaceName, removals)]) await runner.run(argv, { allowFail: true })
      lastSet = undefined
    }
  }
}
