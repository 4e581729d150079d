import type { SysctlAccess } from './forwarding.js'

/** FakeSysctl is an in-memory SysctlAccess: settings by key, and the egress interface per address. */
export interface FakeSysctl extends SysctlAccess {
  values: Map<string, string>
  routes: Map<string, string>
}

/** createFakeSysctl makes an in-memory SysctlAccess for tests. */
export function createFakeSysctl (values: Record<string, string> = {}, routes: Record<string, string> = {}): FakeSysctl {
  const fake: FakeSysctl = {
    values: new Map(Object.entries(values)),
    routes: new Map(Object.entries(routes)),
    read: async key => fake.values.get(key) ?? '0',
    write: async (key, value) => { fake.values.set(key, value) },
    egressInterface: async address => fake.routes.get(address)
  }
  return fake
}
