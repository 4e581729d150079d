import { readFileSync, statSync } from 'node:fs'
import { wireGuardPublicKey } from '@warren/protocol'
import { createFakeCommandRunner, type FakeCommandRunner } from '../src/testing.js'

/** SimPeer is one peer of the simulated `wg` device. */
interface SimPeer { endpoint?: string, allowedIps: string[], keepalive: number }

/** SimDevice is one simulated interface; `program` is the wireguard-go that runs it. */
interface SimDevice { kind: string, privateKey?: string, listenPort: number, peers: Map<string, SimPeer>, program?: string }

/** SIM_CANDIDATES are where adapters under test look for wireguard-go, instead of this host's PATH. */
export const SIM_CANDIDATES = ['/usr/local/bin/wireguard-go', '/usr/bin/wireguard-go']

/** DEFAULT_BUILDS is the one wireguard-go a simulated host has unless told otherwise. */
const DEFAULT_BUILDS: Record<string, string> = { '/usr/bin/wireguard-go': 'wireguard-go v0.0.20230223\n\nUserspace WireGuard daemon for linux-amd64.\n' }

/**
 * simulateWireGuardSystem answers `ip` and `wg` commands the way a host with
 * wireguard-go (or kernel WireGuard) would, so adapter tests check real command semantics.
 * `builds` maps each installed wireguard-go program to what its `--version` prints;
 * `wireguardGo: false` means none is installed.
 */
export function simulateWireGuardSystem (opts: { kernel?: boolean, wireguardGo?: boolean, builds?: Record<string, string> } = {}): { runner: FakeCommandRunner, devices: Map<string, SimDevice>, dump: (ifname: string) => string[] } {
  const runner = createFakeCommandRunner({ strict: true })
  const devices = new Map<string, SimDevice>()
  const missing = (name: string) => ({ exitCode: 1, stderr: `Device "${name}" does not exist.` })
  runner.on(/^ip link add \S+ type wireguard$/, argv => {
    if (opts.kernel !== true) return { exitCode: 2, stderr: 'Error: Unknown device type.' }
    devices.set(argv[3]!, { kind: 'wireguard', listenPort: 0, peers: new Map() })
    return {}
  })
  const builds = opts.wireguardGo === false ? {} : opts.builds ?? DEFAULT_BUILDS
  runner.on(/^\S*wireguard-go \S+$/, argv => {
    const version = builds[argv[0]!]
    if (version === undefined) return { exitCode: 127, stderr: `${argv[0]!}: command not found (is it installed and on PATH?)` }
    if (argv[1] === '--version') return { stdout: version }
    devices.set(argv[1]!, { kind: 'tun', listenPort: 0, peers: new Map(), program: argv[0]! })
    return {}
  })
  // Processes: pid 1000 + the device's place in the map runs it.
  const pidOf = (name: string): number => 1000 + [...devices.keys()].indexOf(name)
  runner.on('pgrep -a -x wireguard-go', () => {
    const lines = [...devices].filter(([, d]) => d.program !== undefined).map(([name]) => `${pidOf(name)} wireguard-go ${name}`)
    return lines.length === 0 ? { exitCode: 1 } : { stdout: lines.join('\n') + '\n' }
  })
  runner.on(/^readlink \/proc\/\d+\/exe$/, argv => {
    const found = [...devices].find(([name]) => `/proc/${pidOf(name)}/exe` === argv[1])
    return found?.[1].program === undefined ? { exitCode: 1 } : { stdout: found[1].program + '\n' }
  })
  runner.on(/^dpkg-query /, () => ({ exitCode: 1, stderr: 'dpkg-query: no path found matching pattern' }))
  runner.on(/^ip -d -j link show dev \S+$/, argv => {
    const d = devices.get(argv[6]!)
    return d === undefined ? missing(argv[6]!) : { stdout: JSON.stringify([{ ifname: argv[6], linkinfo: { info_kind: d.kind } }]) }
  })
  runner.on(/^ip link del (dev )?\S+$/, argv => {
    const name = argv.at(-1)!
    return devices.delete(name) ? {} : { exitCode: 1, stderr: 'Cannot find device' }
  })
  runner.on(/^wg show \S+ dump$/, argv => {
    const d = devices.get(argv[2]!)
    if (d === undefined) return { exitCode: 1, stderr: `Unable to access interface: No such device` }
    return { stdout: dump(argv[2]!).join('\n') + '\n' }
  })
  runner.on(/^wg set /, argv => {
    const d = devices.get(argv[2]!)
    if (d === undefined) return { exitCode: 1, stderr: 'Unable to modify interface: No such device' }
    let i = 3
    let peer: SimPeer | undefined
    while (i < argv.length) {
      const word = argv[i++]!
      if (word === 'listen-port') d.listenPort = Number(argv[i++])
      else if (word === 'private-key') {
        // Like wg: the key comes from a file; this simulation insists it is private.
        const file = argv[i++]!
        if ((statSync(file).mode & 0o077) !== 0) return { exitCode: 1, stderr: `key file ${file} is readable by others` }
        d.privateKey = readFileSync(file, 'utf8').trim()
      } else if (word === 'peer') {
        const key = argv[i++]!
        if (argv[i] === 'remove') { d.peers.delete(key); i++; peer = undefined; continue }
        peer = d.peers.get(key) ?? { allowedIps: [], keepalive: 0 }
        d.peers.set(key, peer)
      } else if (word === 'allowed-ips' && peer !== undefined) peer.allowedIps = argv[i++]!.split(',').filter(s => s !== '')
      else if (word === 'endpoint' && peer !== undefined) peer.endpoint = argv[i++]
      else if (word === 'persistent-keepalive' && peer !== undefined) { const v = argv[i++]!; peer.keepalive = v === 'off' ? 0 : Number(v) }
      else return { exitCode: 1, stderr: `Invalid argument: ${word}` }
    }
    return {}
  })
  function dump (ifname: string): string[] {
    const d = devices.get(ifname)!
    const head = [d.privateKey ?? '(none)', d.privateKey === undefined ? '(none)' : wireGuardPublicKey(d.privateKey), String(d.listenPort), 'off'].join('\t')
    const peers = [...d.peers].map(([k, p]) => [k, '(none)', p.endpoint ?? '(none)', p.allowedIps.length === 0 ? '(none)' : p.allowedIps.join(','), '0', '0', '0', p.keepalive === 0 ? 'off' : String(p.keepalive)].join('\t')).sort()
    return [head, ...peers]
  }
  return { runner, devices, dump }
}
