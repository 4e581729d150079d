import { readFile, writeFile, readdir } from 'node:fs/promises'

/**
 * Sysctls reads and writes kernel settings (keys like `net/ipv4/ip_forward`, relative to
 * /proc/sys, which is per network namespace for net/). The fake keeps them in memory.
 */
export interface Sysctls {
  read: (key: string) => Promise<string>
  write: (key: string, value: string) => Promise<void>
  /** interfaces lists the names under net/ipv4/conf, or net/ipv6/conf (all, default and each interface) */
  interfaces: (family?: 'ipv4' | 'ipv6') => Promise<string[]>
}

/** procSysctls reads and writes /proc/sys. */
export const procSysctls: Sysctls = {
  read: async key => (await readFile(`/proc/sys/${key}`, 'utf8')).trim(),
  write: async (key, value) => { await writeFile(`/proc/sys/${key}`, `${value}\n`) },
  interfaces: async (family = 'ipv4') => await readdir(`/proc/sys/net/${family}/conf`)
}

/**
 * relaySysctlPlan is what the kernel relay needs, as measured here: forwarding on;
 * accept_local, since a rewritten packet's source is the relay's own address (otherwise
 * dropped as martian); reverse-path filtering off on every interface (the kernel takes the
 * stricter of `all` and the interface's own value); no ICMP redirects to the nodes.
 *
 * With `ipv6` (the relay listens on IPv6): IPv6 forwarding on too. That makes Linux treat
 * the host as a router, which ignores router advertisements on interfaces set to take
 * them (accept_ra=1): those get accept_ra=2, so a host configured by SLAAC keeps its
 * addresses and default route.
 */
export async function relaySysctlPlan (s: Sysctls, opts: { ipv6?: boolean } = {}): Promise<Array<[string, string]>> {
  const plan: Array<[string, string]> = [
    ['net/ipv4/ip_forward', '1'],
    ['net/ipv4/conf/all/accept_local', '1'],
    ['net/ipv4/conf/all/send_redirects', '0']
  ]
  for (const i of await s.interfaces()) plan.push([`net/ipv4/conf/${i}/rp_filter`, '0'])
  if (opts.ipv6 !== true) return plan
  for (const i of await s.interfaces('ipv6')) {
    if (i !== 'all' && await s.read(`net/ipv6/conf/${i}/accept_ra`) === '1') plan.push([`net/ipv6/conf/${i}/accept_ra`, '2'])
  }
  plan.push(['net/ipv6/conf/all/forwarding', '1'])
  return plan
}

/** SysctlRestore puts back what applySysctls changed. */
export type SysctlRestore = () => Promise<void>

/** applySysctls sets the plan and returns how to restore the values it changed. */
export async function applySysctls (s: Sysctls, plan: Array<[string, string]>): Promise<SysctlRestore> {
  const before: Array<[string, string]> = []
  try {
    for (const [key, value] of plan) {
      const old = await s.read(key)
      if (old === value) continue
      await s.write(key, value)
      before.push([key, old])
    }
  } catch (e) {
    await restore(s, before)
    throw Object.assign(new Error(`the relay cannot set kernel settings (${(e as Error).message}); run it as root`), { code: 'sysctl_failed' })
  }
  return async () => { await restore(s, before) }
}

async function restore (s: Sysctls, before: Array<[string, string]>): Promise<void> {
  for (const [key, value] of before.reverse()) {
    try { await s.write(key, value) } catch { /* an interface may have gone away meanwhile */ }
  }
}
