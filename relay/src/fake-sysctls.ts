import type { Sysctls } from './sysctls.js'

/** FakeSysctls keeps kernel settings in a map; `values` shows them. */
export interface FakeSysctls extends Sysctls {
  readonly values: Map<string, string>
}

export function createFakeSysctls (initial: Record<string, string> = {}, interfaces = ['all', 'default', 'lo', 'eth0']): FakeSysctls {
  // the same interfaces under net/ipv4/conf and net/ipv6/conf
  const values = new Map(Object.entries(initial))
  return {
    values,
    read: async k => values.get(k) ?? '0',
    write: async (k, v) => { values.set(k, v) },
    interfaces: async () => interfaces
  }
}
