import { createFakeCommandRunner, type FakeCommandRunner } from '../src/testing.js'

/** SimLink is one link of the simulated host. */
export interface SimLink { up: boolean, mtu: number, addrs: Map<string, string>, routes: Map<string, string> }

/**
 * simulateIpSystem answers `ip` commands like iproute2 on a host with the given links:
 * JSON views, add/del that fail on duplicates or missing entries, and the kernel's own
 * routes (a fe80::/64 once the link is up) that the router must leave alone, and the
 * kernel's flush of IPv4 routes when a link's last IPv4 address goes.
 */
export function simulateIpSystem (names: string[]): { runner: FakeCommandRunner, links: Map<string, SimLink>, view: (name: string) => string[] } {
  const runner = createFakeCommandRunner({ strict: true })
  const links = new Map(names.map(n => [n, { up: false, mtu: 1420, addrs: new Map([['fe80::1/64', 'link']]), routes: new Map<string, string>() }]))
  const missing = (n: string) => ({ exitCode: 1, stderr: `Device "${n}" does not exist.` })
  runner.on(/^ip -j addr show dev \S+$/, argv => {
    const l = links.get(argv[5]!)
    if (l === undefined) return missing(argv[5]!)
    const addr = [...l.addrs].map(([a, scope]) => ({ family: a.includes(':') ? 'inet6' : 'inet', local: a.split('/')[0], prefixlen: Number(a.split('/')[1]), scope }))
    return { stdout: JSON.stringify([{ ifname: argv[5], flags: ['POINTOPOINT', ...(l.up ? ['UP'] : [])], mtu: l.mtu, addr_info: addr }]) }
  })
  runner.on(/^ip (-6 )?-j route show dev \S+$/, argv => {
    const v6 = argv[1] === '-6'
    const l = links.get(argv.at(-1)!)
    if (l === undefined) return missing(argv.at(-1)!)
    const routes = [...l.routes].filter(([r]) => r.includes(':') === v6).map(([r, proto]) => ({ dst: r.endsWith('/32') ? r.slice(0, -3) : r, ...(proto === 'boot' ? {} : { protocol: proto }) }))
    if (v6 && l.up) routes.push({ dst: 'fe80::/64', protocol: 'kernel' })
    return { stdout: JSON.stringify(routes) }
  })
  runner.on(/^ip link set dev \S+ (up|mtu \d+)$/, argv => {
    const l = links.get(argv[4]!)
    if (l === undefined) return missing(argv[4]!)
    if (argv[5] === 'up') l.up = true
    else l.mtu = Number(argv[6])
    return {}
  })
  runner.on(/^ip (-6 )?addr (add|del) \S+ dev \S+( nodad)?$/, argv => {
    const args = argv[1] === '-6' ? argv.slice(2) : argv.slice(1)
    const [, op, addr, , dev] = args as [string, string, string, string, string]
    const l = links.get(dev)
    if (l === undefined) return missing(dev)
    if (op === 'add') {
      if (l.addrs.has(addr)) return { exitCode: 2, stderr: 'RTNETLINK answers: File exists' }
      l.addrs.set(addr, 'global')
    } else if (!l.addrs.delete(addr)) return { exitCode: 2, stderr: 'RTNETLINK answers: Cannot assign requested address' }
    // As Linux does: a link without IPv4 addresses loses its IPv4 routes.
    if (![...l.addrs.keys()].some(a => !a.includes(':'))) for (const r of [...l.routes.keys()]) if (!r.includes(':')) l.routes.delete(r)
    return {}
  })
  runner.on(/^ip (-6 )?route (replace|del) \S+ dev \S+$/, argv => {
    const args = argv[1] === '-6' ? argv.slice(2) : argv.slice(1)
    const [, op, route, , dev] = args as [string, string, string, string, string]
    const l = links.get(dev)
    if (l === undefined) return missing(dev)
    if (!l.up) return { exitCode: 2, stderr: 'RTNETLINK answers: Network is down' }
    if (op === 'replace') l.routes.set(route, 'boot')
    else if (!l.routes.delete(route)) return { exitCode: 2, stderr: 'RTNETLINK answers: No such process' }
    return {}
  })
  const view = (name: string): string[] => {
    const l = links.get(name)!
    return [`link ${l.up ? 'up' : 'down'} mtu ${l.mtu}`, ...[...l.addrs.keys()].map(a => `addr ${a}`).sort(), ...[...l.routes.keys()].map(r => `route ${r}`).sort()]
  }
  return { runner, links, view }
}
