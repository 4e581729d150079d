import { promises as fs } from 'node:fs'
import { WarrenError, formatIpAddress, parseIpPrefix } from '@warren/protocol'
import type { CommandRunner } from '../runner/index.js'

/**
 * Forwarding switches on IP forwarding for a subnet router, as narrowly as Linux allows,
 * and puts every value back exactly on `close`:
 * - IPv4 forwarding is per interface, judged on the interface a packet arrives by: the
 *   mesh interface (packets into the subnets) and each interface a served route leaves by
 *   (their replies) get `net.ipv4.conf.<if>.forwarding=1`; others stay as they were. The
 *   firewall locks the latter (what arrives on them is forwarded only into the mesh).
 * - IPv6 has no per-interface switch for forwarding (`conf.<if>.forwarding` only turns
 *   router behaviour on), so an IPv6 route needs `net.ipv6.conf.all.forwarding=1`.
 * The values found before are kept in a file (0600) when `savePath` is given, so a
 * restarted daemon still restores them.
 */
export interface Forwarding {
  /** plan says which settings the routes need, and which interfaces they switch on besides the mesh's */
  plan: (config: ForwardingConfig) => Promise<ForwardingPlan>
  /** set applies a plan: settings it names are set (the value found first is kept), others Warren set are restored */
  set: (plan: ForwardingPlan) => Promise<void>
  /** close restores every value Warren changed */
  close: () => Promise<void>
}

/** ForwardingConfig is the mesh interface and the subnet routes this node serves. */
export interface ForwardingConfig {
  interfaceName: string
  routes: string[]
}

/** ForwardingPlan lists sysctl settings (slash form, `net/ipv4/conf/eth0/forwarding`) and the interfaces to lock. */
export interface ForwardingPlan {
  settings: string[]
  lockedInterfaces: string[]
}

export const NO_FORWARDING: ForwardingPlan = { settings: [], lockedInterfaces: [] }

/** SysctlAccess reads and writes kernel settings; the real one goes through `sysctl`, tests use a fake. */
export interface SysctlAccess {
  read: (key: string) => Promise<string>
  write: (key: string, value: string) => Promise<void>
  /** egressInterface is the interface the host sends to an address by (`ip route get`), if any */
  egressInterface: (address: string) => Promise<string | undefined>
}

/** ipv4Forwarding is the sysctl key that turns forwarding on for packets arriving by `ifname`. */
export const ipv4Forwarding = (ifname: string): string => `net/ipv4/conf/${ifname}/forwarding`
export const IPV6_FORWARDING = 'net/ipv6/conf/all/forwarding'

/** firstHost is the first address of a route after its network address (the address to look a route up by). */
function firstHost (route: string): { address: string, v6: boolean } {
  const p = parseIpPrefix(route)
  if (p === undefined) throw new WarrenError('bad_route', `route "${route}" is not a CIDR`, { field: 'routes' })
  const bits = p.family === 4 ? 32 : 128
  return { address: formatIpAddress(p.family, p.length < bits ? p.network + 1n : p.network), v6: p.family === 6 }
}

/** createSysctlAccess reads and writes settings with `sysctl` and looks routes up with `ip`, through the runner. */
export function createSysctlAccess (runner: CommandRunner): SysctlAccess {
  return {
    read: async key => (await runner.run(['sysctl', '-n', key])).stdout.trim(),
    write: async (key, value) => { await runner.run(['sysctl', '-q', '-w', `${key}=${value}`]) },
    async egressInterface (address) {
      const r = await runner.run(['ip', '-j', ...(address.includes(':') ? ['-6'] : ['-4']), 'route', 'get', address], { allowFail: true })
      if (r.exitCode !== 0) return undefined
      const dev = (JSON.parse(r.stdout) as Array<{ dev?: string }>)[0]?.dev
      return typeof dev === 'string' && dev !== 'lo' ? dev : undefined
    }
  }
}

/** createForwarding makes the adapter over a sysctl access; `savePath` keeps the values found before across restarts. */
export function createForwarding (sysctl: SysctlAccess, opts: { savePath?: string } = {}): Forwarding {
  /** the value each setting had before Warren changed it */
  let saved: Map<string, string> | undefined

  async function load (): Promise<Map<string, string>> {
    if (saved !== undefined) return saved
    const text = opts.savePath === undefined ? undefined : await fs.readFile(opts.savePath, 'utf8').catch(() => undefined)
    const parsed = text === undefined ? {} : JSON.parse(text) as Record<string, string>
    saved = new Map(Object.entries(parsed).filter(([, v]) => typeof v === 'string'))
    return saved
  }

  async function persist (m: Map<string, string>): Promise<void> {
    if (opts.savePath === undefined) return
    if (m.size === 0) { await fs.rm(opts.savePath, { force: true }); return }
    await fs.writeFile(opts.savePath, JSON.stringify(Object.fromEntries(m)) + '\n', { mode: 0o600 })
  }

  async function restore (m: Map<string, string>, keep: ReadonlySet<string>): Promise<void> {
    for (const [key, value] of [...m]) {
      if (keep.has(key)) continue
      // An interface that is gone took its setting with it: nothing to restore.
      await sysctl.write(key, value).catch(() => undefined)
      m.delete(key)
    }
    await persist(m)
  }

  return {
    async plan (config) {
      if (config.routes.length === 0) return NO_FORWARDING
      const m = await load()
      const settings = new Set([ipv4Forwarding(config.interfaceName)])
      const locked = new Set<string>()
      for (const route of config.routes) {
        const { address, v6 } = firstHost(route)
        if (v6) { settings.add(IPV6_FORWARDING); continue }
        const dev = await sysctl.egressInterface(address)
        if (dev === undefined || dev === config.interfaceName) continue
        const key = ipv4Forwarding(dev)
        // an interface that forwarded before Warren is the host's business; one Warren switched on is locked
        if (m.has(key) || await sysctl.read(key) !== '1') locked.add(dev)
        settings.add(key)
      }
      return { settings: [...settings].sort(), lockedInterfaces: [...locked].sort() }
    },
    async set (plan) {
      const m = await load()
      for (const key of plan.settings) {
        const now = await sysctl.read(key)
        if (!m.has(key)) {
          if (now === '1') continue
          m.set(key, now)
          await persist(m)
        }
        if (now !== '1') await sysctl.write(key, '1')
      }
      await restore(m, new Set(plan.settings))
    },
    close: async () => { await restore(await load(), new Set()) }
  }
}
