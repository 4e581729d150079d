import { execFileSync } from 'node:child_process'
import { rmSync, readFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { execCommand, spawnProcess, type ExecOptions, type ExecResult, type ProcessHandle, type SpawnOptions } from './process.js'

/**
 * netns builds throwaway network topologies for tests: every host is a fresh network
 * namespace joined to one or more bridged networks (kept in a hub namespace of their
 * own), so tests send traffic only between namespaces they made. Teardown kills every
 * process in those namespaces and deletes them, also when the test fails or the test
 * process exits early.
 */

/** TestLike is the part of a tap test the harness needs: somewhere to register cleanup. */
export interface TestLike {
  teardown: (fn: () => unknown) => void
}

/** NetInterface is one interface of a host on one network. */
export interface NetInterface {
  /** interface name inside the host's namespace (eth0, eth1, ...) */
  name: string
  network: string
  /** IPv4 address without prefix length */
  address: string
  /** address with the network's prefix length */
  cidr: string
}

/** Network is one broadcast domain: a bridge in the hub namespace with its own 10.x /24. */
export interface Network {
  name: string
  bridge: string
  /** like 10.37.12.0/24 */
  subnet: string
}

/** Host is one namespace of a topology. */
export interface Host {
  /** the name the test gave it (a, b, ... or its own) */
  name: string
  /** the namespace's name, unique on this machine */
  netns: string
  interfaces: NetInterface[]
  /** address of the first interface: how other hosts reach this one */
  address: string
  exec: (argv: readonly string[], opts?: ExecOptions) => Promise<ExecResult>
  /** pids lists the live processes inside the host's namespace */
  pids: () => Promise<number[]>
  spawn: (argv: readonly string[], opts?: SpawnOptions) => ProcessHandle
  /**
   * interfaceName gives a name (<= 15 chars) unique on this machine, for interfaces such
   * as WireGuard whose wireguard-go control socket in /var/run/wireguard is shared by all
   * namespaces.
   */
  interfaceName: (tag?: string) => string
}

/** Topology is a set of hosts on networks; close() (also run at teardown) removes it all. */
export interface Topology {
  id: string
  /** the namespace that holds the bridges */
  hub: string
  hosts: Host[]
  networks: Network[]
  host: (name: string) => Host
  /** addNetwork adds another bridged network (a LAN behind a NAT router, say) */
  addNetwork: (name: string) => Promise<Network>
  /** addHost adds a host on the named networks (default: the backbone); one interface per network */
  addHost: (name: string, opts?: { networks?: string[] }) => Promise<Host>
  close: () => Promise<void>
}

/** TopologyOptions say how many hosts (named a, b, c, ...) or which names. */
export interface TopologyOptions {
  hosts: number | string[]
}

/**
 * testIpv6Prefix gives a random /48 of the documentation range (2001:db8::/32) as its
 * first three groups, written as the kernel and `ss` print them (no leading zeros), for
 * tests that put IPv6 addresses on a topology's interfaces.
 */
export function testIpv6Prefix (): string {
  return `2001:db8:${(0x1000 + randomBytes(2).readUInt16BE(0) % 0xf000).toString(16)}`
}

/** BACKBONE is the network every host joins unless told otherwise. */
export const BACKBONE = 'backbone'

const live = new Set<string>()
let exitHookInstalled = false
let skipReason: string | false | undefined

/**
 * netnsSkipReason says why namespace tests cannot run here (not root, not Linux, no
 * `ip netns`), or false when they can. Use it as tap's `skip` option.
 */
export function netnsSkipReason (): string | false {
  if (skipReason !== undefined) return skipReason
  if (process.platform !== 'linux') skipReason = 'network namespace tests need Linux'
  else if (process.getuid?.() !== 0) skipReason = 'network namespace tests need root (CI runs them as root): run the tests with sudo'
  else {
    const probe = `wprobe${process.pid}${randomBytes(2).toString('hex')}`
    try {
      execFileSync('ip', ['netns', 'add', probe], { stdio: 'pipe' })
      execFileSync('ip', ['netns', 'del', probe], { stdio: 'pipe' })
      skipReason = false
    } catch (e) {
      const err = e as { stderr?: Buffer, message: string }
      skipReason = `\`ip netns\` is unavailable here (${(err.stderr?.toString() ?? err.message).trim()}): install iproute2 and run as root`
    }
  }
  return skipReason
}

/** killNamespaceSync is the last-resort cleanup at process exit: synchronous, best effort. */
function killNamespaceSync (ns: string): void {
  try {
    const pids = execFileSync('ip', ['netns', 'pids', ns], { stdio: 'pipe' }).toString().split(/\s+/).filter(Boolean)
    for (const pid of pids) { try { process.kill(Number(pid), 'SIGKILL') } catch {} }
  } catch {}
  try { execFileSync('ip', ['netns', 'del', ns], { stdio: 'pipe' }) } catch {}
  rmSync(`/etc/netns/${ns}`, { recursive: true, force: true })
}

function installExitHook (): void {
  if (exitHookInstalled) return
  exitHookInstalled = true
  process.on('exit', () => { for (const ns of live) killNamespaceSync(ns) })
  // A test runner's timeout ends the process with a signal, which skips 'exit':
  // clean up, then die of the same signal as we would have.
  // When others listen too (a test runner does), they decide how the process ends.
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      for (const ns of live) killNamespaceSync(ns)
      live.clear()
      if (process.listenerCount(sig) === 1) {
        process.removeListener(sig, onSignal)
        process.kill(process.pid, sig)
      }
    }
    process.on(sig, onSignal)
  }
}

/**
 * namespacePids lists the live processes in a namespace. Zombies are left out: a
 * daemonized process (wireguard-go) that exits is reaped by init, which may take seconds.
 */
export async function namespacePids (ns: string): Promise<number[]> {
  const r = await execCommand(['ip', 'netns', 'pids', ns], { allowFail: true })
  if (r.exitCode !== 0) return []
  return r.stdout.split(/\s+/).filter(Boolean).map(Number).filter(pid => {
    try {
      return !/^\d+ \(.*\) Z /s.test(readFileSync(`/proc/${pid}/stat`, 'utf8'))
    } catch {
      return false
    }
  })
}

/**
 * removeNamespace stops everything running in a namespace (SIGTERM, so wireguard-go
 * removes its control socket, then SIGKILL) and deletes it. A namespace lives on while
 * any process is inside it, so the processes must go first.
 */
export async function removeNamespace (ns: string, graceMs = 2000): Promise<void> {
  const signal = (pids: number[], sig: NodeJS.Signals): void => {
    for (const pid of pids) { try { process.kill(pid, sig) } catch {} }
  }
  signal(await namespacePids(ns), 'SIGTERM')
  const deadline = Date.now() + graceMs
  let left = await namespacePids(ns)
  while (left.length > 0 && Date.now() < deadline) {
    await new Promise(resolve => setTimeout(resolve, 50))
    left = await namespacePids(ns)
  }
  signal(left, 'SIGKILL')
  await execCommand(['ip', 'netns', 'del', ns], { allowFail: true })
  rmSync(`/etc/netns/${ns}`, { recursive: true, force: true })
  live.delete(ns)
}

/** createTopology builds hosts on a backbone network and registers their teardown with t. */
export async function createTopology (t: TestLike, opts: TopologyOptions): Promise<Topology> {
  const why = netnsSkipReason()
  if (why !== false) throw new Error(`cannot build a network topology: ${why}`)
  installExitHook()
  const id = `w${randomBytes(3).toString('hex').slice(0, 5)}`
  const hub = `${id}-hub`
  const hosts: Host[] = []
  const networks: Network[] = []
  const processes = new Set<ProcessHandle>()
  const usedSubnets = new Set<string>()
  let closed = false

  const topology: Topology = { id, hub, hosts, networks, host, addNetwork, addHost, close }
  t.teardown(close)

  async function addNamespace (ns: string): Promise<void> {
    live.add(ns)
    await execCommand(['ip', 'netns', 'add', ns])
    await execCommand(['ip', '-n', ns, 'link', 'set', 'lo', 'up'])
  }

  function host (name: string): Host {
    const h = hosts.find(x => x.name === name)
    if (h === undefined) throw new Error(`topology ${id} has no host '${name}' (it has ${hosts.map(x => x.name).join(', ')})`)
    return h
  }

  async function addNetwork (name: string): Promise<Network> {
    if (networks.some(n => n.name === name)) throw new Error(`topology ${id} already has a network '${name}'`)
    let subnet: string
    do subnet = `10.${randomBytes(1)[0]!}.${randomBytes(1)[0]!}.0/24`
    while (usedSubnets.has(subnet))
    usedSubnets.add(subnet)
    const net = { name, bridge: `br${networks.length}`, subnet }
    await execCommand(['ip', '-n', hub, 'link', 'add', net.bridge, 'type', 'bridge'])
    await execCommand(['ip', '-n', hub, 'link', 'set', net.bridge, 'up'])
    networks.push(net)
    return net
  }

  async function addHost (name: string, hostOpts: { networks?: string[] } = {}): Promise<Host> {
    if (!/^[a-z0-9-]{1,20}$/.test(name)) throw new Error(`host name '${name}' must be 1-20 lowercase letters, digits or '-'`)
    if (hosts.some(h => h.name === name)) throw new Error(`topology ${id} already has a host '${name}'`)
    const index = hosts.length + 1
    const ns = `${id}-${name}`
    await addNamespace(ns)
    const interfaces: NetInterface[] = []
    for (const netName of hostOpts.networks ?? [BACKBONE]) {
      const net = networks.find(n => n.name === netName) ?? await addNetwork(netName)
      const ifname = `eth${interfaces.length}`
      const hubSide = `v${index}n${networks.indexOf(net)}`
      // Both ends are created straight in their namespaces: no names in the host's own.
      await execCommand(['ip', '-n', hub, 'link', 'add', hubSide, 'type', 'veth', 'peer', 'name', ifname, 'netns', ns])
      await execCommand(['ip', '-n', hub, 'link', 'set', hubSide, 'master', net.bridge, 'up'])
      const address = net.subnet.replace(/\.0\/24$/, `.${index}`)
      await execCommand(['ip', '-n', ns, 'addr', 'add', `${address}/24`, 'dev', ifname])
      await execCommand(['ip', '-n', ns, 'link', 'set', ifname, 'up'])
      interfaces.push({ name: ifname, network: net.name, address, cidr: `${address}/24` })
    }
    const h: Host = {
      name,
      netns: ns,
      interfaces,
      address: interfaces[0]?.address ?? '',
      exec: async (argv, execOpts) => await execCommand(['ip', 'netns', 'exec', ns, ...argv], execOpts),
      pids: async () => await namespacePids(ns),
      spawn: (argv, spawnOpts) => {
        if (closed) throw new Error(`topology ${id} is closed`)
        const p = spawnProcess(['ip', 'netns', 'exec', ns, ...argv], spawnOpts)
        processes.add(p)
        void p.exited.then(() => processes.delete(p))
        return p
      },
      interfaceName: (tag = '') => `wg${id.slice(1)}${index}${tag}`.slice(0, 15)
    }
    hosts.push(h)
    return h
  }

  async function close (): Promise<void> {
    if (closed) return
    closed = true
    await Promise.all([...processes].map(async p => await p.kill('SIGTERM', 2000)))
    await Promise.all([...hosts.map(h => h.netns), hub].map(async ns => await removeNamespace(ns)))
  }

  try {
    await addNamespace(hub)
    await addNetwork(BACKBONE)
    const names = typeof opts.hosts === 'number' ? Array.from({ length: opts.hosts }, (_, i) => String.fromCharCode(97 + i)) : opts.hosts
    for (const name of names) await addHost(name)
  } catch (e) {
    await close()
    throw e
  }
  return topology
}
