import { mkdtempSync, rmSync, mkdirSync, writeFileSync } from 'node:fs'
import { createServer, connect, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { LocalStatus } from '@warren/protocol'
import { createLocalClient } from '@warren/sdk'
import { createTopology, type Host, type TestLike, type Topology } from './netns.js'
import { execCommand, type ExecResult, type ProcessHandle } from './process.js'

/**
 * mesh runs a whole Warren mesh as real processes: a controller in a namespace of its
 * own and one daemon per node namespace, joined with auth keys, all through the real
 * `warren` CLI. It is removed at teardown, also when the test fails, and on failure it
 * prints what the processes said. It also carries a small traffic tool (`flow`) that
 * runs inside namespaces, for tests that watch connections open, stream and stop.
 */

/** WARREN_ARGV runs the compiled CLI of @warren/cli with this node binary. */
export const WARREN_ARGV = [process.execPath, fileURLToPath(new URL('./bin/warren.js', import.meta.resolve('@warren/cli')))]
/** FLOW_ARGV runs this file's traffic tool (see runFlowTool). */
export const FLOW_ARGV = [process.execPath, fileURLToPath(import.meta.url), 'flow']

/** TestWithResult is the part of a tap test the mesh needs: cleanup, and whether it failed. */
export interface TestWithResult extends TestLike {
  passing: () => boolean
  comment: (...message: unknown[]) => void
}

/** MeshNode is one daemon in its namespace. */
export interface MeshNode {
  name: string
  host: Host
  stateDir: string
  socket: string
  /** the WireGuard interface name, unique on this machine */
  iface: string
  proc: ProcessHandle
  /** ipv4 and ipv6 are the mesh addresses, known once the node is up */
  ipv4: string
  ipv6: string
  /** wgKey is the node's WireGuard public key */
  wgKey: string
  status: () => Promise<LocalStatus>
  /** restart starts the daemon again on the same state (after the test killed it) and waits until it runs */
  restart: () => Promise<void>
  /** wgPeers lists the public keys `wg show IFACE peers` prints */
  wgPeers: () => Promise<string[]>
}

/**
 * JoinOptions say how a node joins: with an auth key, or (without one) by logging in:
 * `logIn` is given the login URL `warren up` printed and plays the person.
 */
export type JoinOptions = {
  /** hostname to register (default: the host's name) */
  hostname?: string
  /** extra environment for the daemon (shortened path timings, a skewed clock) */
  env?: Record<string, string>
} & ({ authKey: string, logIn?: undefined } | { authKey?: undefined, logIn: (loginUrl: string) => Promise<void> })

export interface Mesh {
  topology: Topology
  /** dir is a temp dir for state dirs, sockets and files the test writes */
  dir: string
  controllerHost: Host
  controller: ProcessHandle
  /** url is the controller's https:// URL on the backbone */
  url: string
  /** controllerStateDir is what `warren admin --state-dir` takes */
  controllerStateDir: string
  nodes: Map<string, MeshNode>
  node: (name: string) => MeshNode
  /** warren runs the CLI (in `host`'s namespace when given) and returns what it printed; allowFail keeps a failure */
  warren: (args: string[], opts?: { host?: Host, allowFail?: boolean }) => Promise<ExecResult>
  /** admin runs `warren admin --state-dir ... ARGS` and returns stdout; it throws on failure */
  admin: (...args: string[]) => Promise<string>
  /** join starts a daemon on a new host named `name` and brings it up with the auth key, or by logging in */
  join: (name: string, opts: JoinOptions) => Promise<MeshNode>
}

export interface MeshOptions {
  /** names of the node hosts to create now (they join later, with join); none when `lab` is given */
  hosts: string[]
  /**
   * lab puts the mesh in a topology built already (a NAT lab, say): the controller runs on
   * `lab.controller` and nodes join on the lab's hosts by name
   */
  lab?: { topology: Topology, controller: Host }
  /** the controller's TCP port (default 8443; 443 where only HTTPS may leave) */
  controllerPort?: number
  /** extra arguments for `warren controller serve` */
  controllerArgs?: string[]
  /** daemon log level (default info) */
  logLevel?: string
}

/**
 * createMesh builds the topology (host `ctl` plus `opts.hosts`), starts the controller
 * and waits until it listens. Nodes join with mesh.join once the test has made users,
 * keys and perhaps a policy.
 */
export async function createMesh (t: TestWithResult, opts: MeshOptions): Promise<Mesh> {
  if (opts.lab !== undefined && opts.hosts.length > 0) throw new Error('createMesh: with a lab, nodes are the lab\'s hosts; pass hosts: []')
  const topology = opts.lab?.topology ?? await createTopology(t, { hosts: ['ctl', ...opts.hosts] })
  const dir = mkdtempSync(join(tmpdir(), 'warren-mesh-'))
  const controllerHost = opts.lab?.controller ?? topology.host('ctl')
  const controllerStateDir = join(dir, 'controller')
  const nodes = new Map<string, MeshNode>()

  const controller = controllerHost.spawn([...WARREN_ARGV, 'controller', 'serve', '--state-dir', controllerStateDir,
    '--listen', `${controllerHost.address}:${opts.controllerPort ?? 8443}`, ...(opts.controllerArgs ?? [])])
  // Teardowns run newest first, before the topology's: the mesh's processes stop before
  // their state directory goes (a daemon still saving its state would leave it not empty).
  t.teardown(async () => {
    await Promise.all([controller, ...[...nodes.values()].map(n => n.proc)].map(async p => await p.kill('SIGTERM', 2000)))
    rmSync(dir, { recursive: true, force: true, maxRetries: 5 })
  })
  t.teardown(() => {
    // On failure, what the processes said is the best clue.
    if (t.passing()) return
    t.comment(`controller output:\n${controller.output().slice(-3000)}`)
    for (const n of nodes.values()) t.comment(`daemon ${n.name} output:\n${n.proc.output().slice(-6000)}`)
  })
  const url = (await controller.waitForLine(/listening on (https:\/\/\S+)/, 120_000))[1]!

  const warren = async (args: string[], o: { host?: Host, allowFail?: boolean } = {}): Promise<ExecResult> => {
    const argv = [...WARREN_ARGV, ...args]
    const r = o.host === undefined ? await execCommand(argv, { allowFail: true }) : await o.host.exec(argv, { allowFail: true })
    if (r.exitCode !== 0 && o.allowFail !== true) throw new Error(`warren ${args.join(' ')} failed (exit ${r.exitCode}): ${r.stderr}${r.stdout}`)
    return r
  }
  const admin = async (...args: string[]): Promise<string> => (await warren(['admin', '--state-dir', controllerStateDir, ...args])).stdout

  const node = (name: string): MeshNode => {
    const n = nodes.get(name)
    if (n === undefined) throw new Error(`the mesh has no node '${name}' (it has ${[...nodes.keys()].join(', ')})`)
    return n
  }

  const joinNode = async (name: string, j: JoinOptions): Promise<MeshNode> => {
    const host = topology.host(name)
    const stateDir = join(dir, name)
    const socket = join(dir, `${name}.sock`)
    const iface = host.interfaceName()
    // `ip netns exec` puts this file over /etc/resolv.conf; MagicDNS takes it over.
    mkdirSync(`/etc/netns/${host.netns}`, { recursive: true })
    writeFileSync(`/etc/netns/${host.netns}/resolv.conf`, `nameserver ${controllerHost.address}\n`)
    const spawnDaemon = (): ProcessHandle => host.spawn([...WARREN_ARGV, 'node', 'run', '--state-dir', stateDir, '--socket', socket, '--interface', iface,
      '--wireguard', 'auto', '--log-level', opts.logLevel ?? 'info'], j.env !== undefined ? { env: j.env } : {})
    const proc = spawnDaemon()
    // Tests poll status often: asked over the LocalAPI socket in this process, not by a CLI process each time.
    const local = createLocalClient({ socketPath: socket })
    const status = async (): Promise<LocalStatus> => await local.status()
    const wgPeers = async (): Promise<string[]> => (await host.exec(['wg', 'show', iface, 'peers'], { allowFail: true })).stdout.split('\n').filter(Boolean)
    const restart = async (): Promise<void> => {
      await m.proc.kill('SIGKILL')
      m.proc = spawnDaemon()
      await m.proc.waitForLine(/warrend started/, 120_000)
    }
    const m: MeshNode = { name, host, stateDir, socket, iface, proc, ipv4: '', ipv6: '', wgKey: '', status, restart, wgPeers }
    nodes.set(name, m)
    await proc.waitForLine(/warrend started/, 120_000)
    const up = ['up', '--socket', socket, '--controller', url, '--hostname', j.hostname ?? name, '--timeout', '120s']
    if (j.authKey !== undefined) {
      await warren([...up, '--auth-key', j.authKey])
    } else {
      // Without an auth key (which embeds it) the node pins the certificate the controller printed.
      const fingerprint = (await controller.waitForLine(/certificate fingerprint \(SHA-256\): (\S+)/, 10_000))[1]!
      const cli = host.spawn([...WARREN_ARGV, ...up, '--fingerprint', fingerprint])
      const loginUrl = (await cli.waitForLine(/^\s+(https:\/\/\S+\/login\/\S+)$/, 120_000))[1]!
      await j.logIn(loginUrl)
      const exit = await cli.exited
      if (exit.code !== 0) throw new Error(`warren up (logging in) failed (exit ${exit.code}): ${cli.output()}`)
    }
    const self = (await status()).self!
    m.ipv4 = self.ipv4
    m.ipv6 = self.ipv6
    m.wgKey = self.wgKey
    return m
  }

  return { topology, dir, controllerHost, controller, url, controllerStateDir, nodes, node, warren, admin, join: joinNode }
}

/**
 * canConnect says whether a TCP connection from `from` to ip:port opens within
 * `timeoutMs` (a SYN the receiving node rejects fails at once; one that goes unanswered,
 * as when its node is not a peer, waits out the timeout).
 */
export async function canConnect (from: Host, ip: string, port: number, timeoutMs = 500): Promise<boolean> {
  const r = await from.exec(['timeout', String(timeoutMs / 1000), 'nc', '-z', '-n', ip, String(port)], { allowFail: true })
  return r.exitCode === 0
}

/** Dial is how a TCP connect ended: `open`, the error code (EHOSTUNREACH, ECONNREFUSED, ...) or `timeout`, and after how long. */
export interface Dial { result: string, ms: number }

/** dial connects once from `from` to ip:port with the flow tool and says how it ended. */
export async function dial (from: Host, ip: string, port: number, timeoutMs = 10_000): Promise<Dial> {
  const r = await from.exec([...FLOW_ARGV, 'dial', ip, String(port), String(timeoutMs)])
  const m = /^dial (\S+) (\d+)$/m.exec(r.stdout)
  if (m === null) throw new Error(`flow dial printed no verdict: ${JSON.stringify(r.stdout)}`)
  return { result: m[1]!, ms: Number(m[2]) }
}

/** canPing says whether one ICMP echo from `from` to ip is answered within `timeoutMs`. */
export async function canPing (from: Host, ip: string, timeoutMs = 1000): Promise<boolean> {
  const r = await from.exec(['ping', '-n', '-c', '1', '-W', String(Math.max(1, Math.ceil(timeoutMs / 1000))), ip], { allowFail: true })
  return r.exitCode === 0
}

/** FlowSample is one `rx` line of the flow tool: bytes received so far on a connection, and when. */
export interface FlowSample { port: number, bytes: number, at: number }

/** flowSamples reads the `rx PORT BYTES EPOCHMS` lines a flow process printed. */
export function flowSamples (output: string): FlowSample[] {
  const out: FlowSample[] = []
  for (const m of output.matchAll(/^rx (\d+) (\d+) (\d+)$/gm)) out.push({ port: Number(m[1]), bytes: Number(m[2]), at: Number(m[3]) })
  return out
}

/**
 * runFlowTool is the traffic tool run inside namespaces (`node mesh.js flow ...`):
 * - `serve PORT[,PORT...]` accepts TCP on every address, echoes what it receives, and
 *   prints `listening` once bound;
 * - `send IP PORT` connects, sends 1 KiB every 10 ms and prints `connected`;
 * - `dial IP PORT MS` connects once and prints `dial RESULT ELAPSEDMS`, RESULT being `open`,
 *   the error code or `timeout` (after MS), then exits.
 * `serve` and `send` print `rx PORT BYTES EPOCHMS` at most every 20 ms while bytes arrive, so a test
 * can see when a stream stops carrying data.
 */
export async function runFlowTool (args: string[]): Promise<void> {
  const report = (port: number, sock: Socket): void => {
    let bytes = 0
    let shown = 0
    const timer = setInterval(() => {
      if (bytes !== shown) { shown = bytes; process.stdout.write(`rx ${port} ${bytes} ${Date.now()}\n`) }
    }, 20)
    sock.on('data', b => { bytes += b.length })
    sock.on('close', () => { clearInterval(timer); process.stdout.write(`closed ${port}\n`) })
    sock.on('error', () => undefined)
  }
  const [mode, a, b] = args
  if (mode === 'serve' && a !== undefined) {
    const ports = a.split(',').map(Number)
    await Promise.all(ports.map(async port => await new Promise<void>((resolve, reject) => {
      const server = createServer(sock => { report(port, sock); sock.pipe(sock) })
      server.on('error', reject)
      server.listen(port, '::', () => { resolve() })
    })))
    process.stdout.write('listening\n')
  } else if (mode === 'send' && a !== undefined && b !== undefined) {
    const port = Number(b)
    const sock = connect({ host: a, port })
    report(port, sock)
    sock.on('connect', () => {
      process.stdout.write('connected\n')
      const chunk = Buffer.alloc(1024, 0x61)
      const timer = setInterval(() => { if (sock.writableLength < 1 << 20) sock.write(chunk) }, 10)
      sock.on('close', () => { clearInterval(timer) })
    })
  } else if (mode === 'dial' && a !== undefined && b !== undefined) {
    const started = Date.now()
    const sock = connect({ host: a, port: Number(b) })
    const done = (result: string): void => {
      clearTimeout(timer)
      sock.destroy()
      process.stdout.write(`dial ${result} ${Date.now() - started}\n`)
    }
    const timer = setTimeout(() => { done('timeout') }, Number(args[3] ?? 10_000))
    sock.on('connect', () => { done('open') })
    sock.on('error', (err: NodeJS.ErrnoException) => { done(err.code ?? 'error') })
  } else {
    process.stderr.write('usage: flow serve PORT[,PORT...] | flow send IP PORT | flow dial IP PORT MS\n')
    process.exitCode = 2
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv[2] === 'flow') await runFlowTool(process.argv.slice(3))
