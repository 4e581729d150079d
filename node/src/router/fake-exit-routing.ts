import { itemKey, type ExitItem } from './exit-routing-plan.js'
import type { ExitRoutingSystem } from './exit-routing.js'

/** FakeExitRoutingSystem keeps the items in memory, for engine and daemon tests. */
export interface FakeExitRoutingSystem extends ExitRoutingSystem {
  items: () => string[]
  marks: Map<string, boolean>
  lanSubnets: string[]
}

/** createFakeExitRoutingSystem applies `ip` commands to an in-memory list, as the kernel would. */
export function createFakeExitRoutingSystem (lanSubnets: string[] = []): FakeExitRoutingSystem {
  const items = new Map<string, ExitItem>()
  const fake: FakeExitRoutingSystem = {
    lanSubnets,
    marks: new Map(),
    items: () => [...items.keys()].sort(),
    current: async () => [...items.values()],
    lan: async () => [...fake.lanSubnets],
    async apply (commands) {
      for (const [, fam, kind, verb, ...spec] of commands) {
        const item: ExitItem = { family: fam === '-6' ? 6 : 4, kind: kind as ExitItem['kind'], spec }
        if (verb === 'add') items.set(itemKey(item), item)
        else items.delete(itemKey(item))
      }
    },
    async mark (ifname, on) { fake.marks.set(ifname, on) }
  }
  return fake
}
