import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { LocalPeerStatus } from '@warren/protocol'

/** PathKind is how WireGuard reaches a peer (LocalPeerPath's kind). */
export type PathKind = NonNullable<LocalPeerStatus['path']>['kind']
import { waitFor, type ProcessHandle } from './process.js'
import { canConnect, canPing, flowSamples, FLOW_ARGV, type Mesh, type MeshNode } from './mesh.js'
import type { NatLab } from './nat-lab.js'
import type { Host } from './netns.js'

/**
 * path-checks are the checks of path selection with a real controller and daemons: which
 * path a node chose, that WireGuard uses it and status shows it, and that the policy is
 * enforced on it as on any other path.
 */

/** Asserts is the part of a tap test the checks use. */
export interface Asserts {
  ok: (value: unknown, message: string) => unknown
  notOk: (value: unknown, message: string) => unknown
  equal: (found: unknown, wanted: unknown, message: string) => unknown
  match: (found: unknown, pattern: RegExp | string, message: string) => unknown
  type: (found: unknown, type: string, message: string) => unknown
}

/** PATHS_POLICY lets tag:a reach tag:b on TCP 80 and ping it, and nothing else. */
export const PATHS_POLICY = `{
  "tagOwners": { "tag:a": ["alice@"], "tag:b": ["alice@"] },
  "acls": [
    { "action": "accept", "src": ["tag:a"], "dst": ["tag:b:80"], "proto": "tcp" },
    { "action": "accept", "src": ["tag:a"], "dst": ["tag:b:*"], "proto": "icmp" },
  ],
}
`

/**
 * joinPair makes the policy and joins `a` (tag:a) and `b` (tag:b); b serves TCP 22 and 80.
 * `env` gives a daemon extra environment by node name (shortened timings, a skewed clock).
 */
export async function joinPair (mesh: Mesh, names: [string, string], env: Record<string, Record<string, string>> = {}): Promise<[MeshNode, MeshNode]> {
  await mesh.admin('users', 'create', 'alice', '--email', 'alice@example.com')
  const file = join(mesh.dir, 'policy.hujson')
  writeFileSync(file, PATHS_POLICY)
  await mesh.admin('policy', 'set', file, '-m', 'paths')
  const key = async (tag: string): Promise<string> =>
    JSON.parse(await mesh.admin('keys', 'create', '--user', 'alice', '--reusable', '--preapproved', '--tags', tag, '--json')).key as string
  const joinAs = async (name: string, tag: string): Promise<MeshNode> => await mesh.join(name, { authKey: await key(tag), ...(env[name] !== undefined ? { env: env[name] } : {}) })
  const a = await joinAs(names[0], 'tag:a')
  const b = await joinAs(names[1], 'tag:b')
  const server: ProcessHandle = b.host.spawn([...FLOW_ARGV, 'serve', '22,80'])
  await server.waitForLine(/^listening$/, 60_000)
  return [a, b]
}

export async function peerOf (n: MeshNode, other: MeshNode): Promise<LocalPeerStatus | undefined> {
  return (await n.status()).peers.find(p => p.wgKey === other.wgKey)
}

/** waitForPath waits until `n` uses a path of `kind` to `other` and returns it. */
export async function waitForPath (n: MeshNode, other: MeshNode, kind: PathKind, timeoutMs = 120_000): Promise<NonNullable<LocalPeerStatus['path']>> {
  return await waitFor(async () => {
    const p = await peerOf(n, other)
    return p?.path?.kind === kind ? p.path : undefined
  }, { timeoutMs, message: `${n.name} choosing a ${kind} path to ${other.name}` })
}

/**
 * wgEndpoints waits until `wg show IFACE endpoints` on `n` gives `endpoint` for `other` and
 * returns what it printed. WireGuard may have roamed to a port the peer sent from while
 * it switched: the daemon puts the chosen endpoint back within seconds.
 */
async function wgEndpoints (n: MeshNode, other: MeshNode, endpoint: string): Promise<string> {
  const line = `${other.wgKey}\t${endpoint}`
  return await waitFor(async () => {
    const out = (await n.host.exec(['wg', 'show', n.iface, 'endpoints'])).stdout
    return out.includes(line) ? out : undefined
  }, { timeoutMs: 30_000, message: `${n.name}'s WireGuard endpoint for ${other.name} to be ${endpoint}` })
}

/** hostPortPattern matches `host:PORT` for a host as given (`[v6]` in brackets), any port. */
function hostPortPattern (host: string): RegExp {
  return new RegExp(`^${host.replace(/[.[\]]/g, '\\$&')}:\\d+$`)
}

/**
 * checkRelayed waits until `n` reaches `other` through a relay of `kind` whose endpoint
 * (what WireGuard sends to) is on `endpointHost`: the relay's address for the kernel UDP
 * relay, loopback for the TLS relay client; `relayId` names the relay (the controller's
 * by default). WireGuard's endpoint must be that one.
 */
export async function checkRelayed (t: Asserts, n: MeshNode, other: MeshNode, kind: Exclude<PathKind, 'direct'>, endpointHost: string, relayId = 'controller'): Promise<NonNullable<LocalPeerStatus['path']>> {
  const path = await waitForPath(n, other, kind)
  t.match(path.endpoint, hostPortPattern(endpointHost), `${n.name} reaches ${other.name} through the ${kind} at ${endpointHost}`)
  t.equal(path.relay, relayId, relayId === 'controller' ? 'the controller\'s embedded relay' : `relay '${relayId}'`)
  t.match(await wgEndpoints(n, other, path.endpoint), `${other.wgKey}\t${path.endpoint}`, `WireGuard's endpoint for ${other.name} is the ${kind}'s`)
  return path
}

/** checkPings: `a` pings `b` on the path in use, twenty pings and none lost. */
export async function checkPings (t: Asserts, a: MeshNode, b: MeshNode): Promise<void> {
  await waitFor(async () => await canPing(a.host, b.ipv4, 1000), { timeoutMs: 60_000, message: `${a.name} pinging ${b.name}` })
  const pings = await a.host.exec(['ping', '-n', '-c', '20', '-i', '0.05', '-W', '2', b.ipv4], { allowFail: true })
  t.match(pings.stdout, / 0% packet loss/, `twenty pings ${a.name} -> ${b.name}, none lost`)
}

/**
 * checkSettledPings: twenty pings from `a` to `b` with none lost, right after a path switch.
 * WireGuard may still roam to a port the other side sent from a moment ago until the daemon
 * pins its endpoint back (within 5 s), which can cost a ping, so runs are tried until one
 * loses none.
 */
export async function checkSettledPings (t: Asserts, a: MeshNode, b: MeshNode, what: string): Promise<void> {
  const message = `twenty pings ${a.name} -> ${b.name} ${what}, none lost`
  await waitFor(async () => / 0% packet loss/.test((await a.host.exec(['ping', '-n', '-c', '20', '-i', '0.05', '-W', '2', b.ipv4], { allowFail: true })).stdout),
    { timeoutMs: 60_000, message })
  t.ok(true, message)
}

/** checkStream: a TCP stream from `a` to the echo server on `b`:`port` carries 256 KiB there and back. */
export async function checkStream (a: MeshNode, b: MeshNode, port: number): Promise<void> {
  const sender = a.host.spawn([...FLOW_ARGV, 'send', b.ipv4, String(port)])
  try {
    await sender.waitForLine(/^connected$/, 60_000)
    await waitFor(() => flowSamples(sender.output()).some(s => s.bytes >= 256 * 1024), { message: `256 KiB echoed back ${b.name}:${port} -> ${a.name}`, timeoutMs: 120_000 })
  } finally {
    await sender.kill()
  }
}

/** checkPathInUse: WireGuard sends to the chosen endpoint, and status says so in text and JSON. */
export async function checkPathInUse (t: Asserts, mesh: Mesh, n: MeshNode, other: MeshNode, want: string): Promise<void> {
  const path = await waitForPath(n, other, 'direct')
  t.match(path.endpoint, hostPortPattern(want), `${n.name} reaches ${other.name} directly at ${want}`)
  t.type(path.latencyMs, 'number', 'with a measured latency')
  t.match(await wgEndpoints(n, other, path.endpoint), `${other.wgKey}\t${path.endpoint}`, 'WireGuard\'s endpoint for the peer is the chosen one')
  const json = JSON.parse((await mesh.warren(['status', '--socket', n.socket, '--json'])).stdout) as { peers: LocalPeerStatus[] }
  t.equal(json.peers.find(p => p.wgKey === other.wgKey)?.path?.kind, 'direct', 'warren status --json shows the path')
  t.match((await mesh.warren(['status', '--socket', n.socket])).stdout, new RegExp(`${other.name}\\s.*direct \\d`), 'warren status shows it')
}

/** checkPolicy: on the path in use, the allowed port connects and a denied one stays denied. */
export async function checkPolicy (t: Asserts, a: MeshNode, b: MeshNode): Promise<void> {
  await waitFor(async () => await canConnect(a.host, b.ipv4, 80, 2000), { timeoutMs: 120_000, message: `${a.name} -> ${b.name}:80 (allowed)` })
  t.notOk(await canConnect(a.host, b.ipv4, 22, 1000), `${a.name} -> ${b.name}:22 stays denied on the path in use`)
  t.notOk(await canConnect(b.host, a.ipv4, 80, 1000), `${b.name} -> ${a.name}:80 is denied: access is one way`)
}


/** PATH_CUT_TABLE is the nftables table (on the lab's core) cutDirectPath adds. */
export const PATH_CUT_TABLE = 'pathcut'

/**
 * cutDirectPath makes the lab's core drop UDP between two sides' public addresses, so the
 * direct path between their nodes stops while the relay (off the core, on the backbone)
 * still works. It returns what removes the cut.
 */
export async function cutDirectPath (lab: NatLab, x: string, y: string): Promise<() => Promise<void>> {
  const px = lab.side(x).publicAddress
  const py = lab.side(y).publicAddress
  const cut = `table inet ${PATH_CUT_TABLE} {\n chain cutfwd {\n  type filter hook forward priority -10; policy accept;\n` +
    `  ip saddr ${px} ip daddr ${py} meta l4proto udp drop\n  ip saddr ${py} ip daddr ${px} meta l4proto udp drop\n }\n}\n`
  await lab.core.exec(['nft', '-f', '-'], { input: cut })
  return async () => { await lab.core.exec(['nft', 'delete', 'table', 'inet', PATH_CUT_TABLE]) }
}

/**
 * relayPorts lists a kernel relay's allocated UDP ports and the bound ones (those it
 * forwards), as its nftables table on `relay` holds them: what the kernel forwards, not
 * what a process says.
 */
export async function relayPorts (relay: Host): Promise<{ allocated: number[], bound: number[] }> {
  const set = async (name: string): Promise<number[]> => {
    const out = (await relay.exec(['nft', '-j', 'list', 'set', 'inet', 'warren_relay', name])).stdout
    const items = (JSON.parse(out) as { nftables: Array<{ set?: { elem?: number[] } }> }).nftables
    return (items.find(i => i.set !== undefined)?.set?.elem ?? []).slice().sort((x, y) => x - y)
  }
  return { allocated: await set('ports'), bound: await set('bound') }
}
