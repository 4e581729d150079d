import { WarrenError } from '@warren/protocol'
import { checkInterfaceName } from './cidr.js'
import type { Router, RouterChanges } from './types.js'
import { checkRouterConfig, planRouter, routerChanges, type LinkState } from './router-plan.js'

/** FakeRouter keeps the interface's addresses and routes in memory, for engine and daemon tests. */
export interface FakeRouter extends Router {
  /** state returns the link as `ip` would show it, or undefined after close */
  state: () => LinkState | undefined
  readonly history: RouterChanges[]
}

/** createFakeRouter returns a FakeRouter that plans changes exactly like the real one. */
export function createFakeRouter (opts: { interfaceName: string, mtu?: number }): FakeRouter {
  checkInterfaceName(opts.interfaceName)
  const { interfaceName } = opts
  let link: LinkState = { up: false, mtu: opts.mtu ?? 1420, addresses: [], routes: [] }
  const history: RouterChanges[] = []
  return {
    interfaceName,
    history,
    state: () => structuredClone(link),
    async up () { link.up = true },
    async set (desired) {
      const want = checkRouterConfig(desired)
      if (want.interfaceName !== interfaceName) {
        throw new WarrenError('bad_config', `router config is for interface '${want.interfaceName}' but this router manages '${interfaceName}'`, { field: 'interfaceName' })
      }
      const plan = planRouter(link, want)
      link = { up: true, mtu: plan.mtu ?? link.mtu, addresses: [...want.addresses], routes: [...want.routes] }
      const changes = routerChanges(plan)
      history.push(changes)
      return changes
    },
    async close () { link = { ...link, addresses: [], routes: [] } }
  }
}
