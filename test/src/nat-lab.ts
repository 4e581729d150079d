import { fileURLToPath } from 'node:url'
import { createSocket, type Socket as UdpSocket } from 'node:dgram'
import { createServer, connect } from 'node:net'
import { encodeControl, encodeStunBindingResponse, ControlKind } from '@warren/protocol'
import { BACKBONE, createTopology, type Host, type Network, type TestLike, type Topology } from './netns.js'

/**
 * nat-lab builds an Internet in miniature out of namespaces, with real nftables NATs:
 *
 *   controller --(backbone)-- core --(wan-A)-- router A --(lan-A)-- node(s) A
 *                              |
 *                              +----(wan-B)-- router B --(lan-B)-- node(s) B
 *
 * `core` is a plain router, so there is always one hop between two NATs: a probe sent
 * with TTL 2 from a node passes its own NAT (making the mapping) and dies at the core,
 * before the other NAT (how Warren punches through two Linux NATs). The core has no route
 * to a NATed LAN, as the Internet has none to a home network. Each NAT router keeps its
 * nftables table (`inet natlab`) in its own namespace; the kinds behave as measured on
 * Linux (see NatKind).
 */

/**
 * NatKind is how a side's router treats its LAN's traffic:
 * - `none`: routed, no NAT (the core routes the LAN; nodes have public addresses);
 * - `cone`: masquerade: endpoint-independent mapping (the source port is kept when free),
 *   address-and-port-dependent filtering (conntrack lets in only replies);
 * - `full-cone`: cone plus a dnat that forwards the mapped WireGuard port to the first
 *   node, so unsolicited packets to it arrive;
 * - `symmetric`: masquerade fully-random: each destination gets its own mapped port;
 * - `udp-blocked`: masquerade, and only TCP to port 443 (and replies) may leave: no UDP.
 */
export type NatKind = 'none' | 'cone' | 'full-cone' | 'symmetric' | 'udp-blocked'

/** NAT_KINDS lists every kind, for tests that go through them all. */
export const NAT_KINDS: readonly NatKind[] = ['none', 'cone', 'full-cone', 'symmetric', 'udp-blocked']

/** NatSideOptions describe one side: its NAT and how many nodes sit behind it. */
export interface NatSideOptions {
  /** 1-8 lowercase letters or digits: names the router (`NAME-nat`) and nodes (`NAME1`, `NAME2`, ...) */
  name: string
  nat: NatKind
  /** nodes behind this NAT (default 1); two or more put nodes behind one NAT */
  nodes?: number
  /** the UDP port a full-cone NAT forwards to its first node (default 41641, Warren's WireGuard port) */
  wgPort?: number
}

/** NatLabOptions say which sides to build. */
export interface NatLabOptions {
  sides: NatSideOptions[]
}

/** NatSide is one NAT router and the LAN behind it. */
export interface NatSide {
  name: string
  nat: NatKind
  router: Host
  /** the router's address on its WAN: what the NAT maps LAN sources to */
  publicAddress: string
  /** the router's address on its LAN: the nodes' gateway */
  lanGateway: string
  lan: Network
  nodes: Host[]
}

/** NatLab is the built lab; its topology is removed at the test's teardown. */
export interface NatLab {
  topology: Topology
  /** core routes between the controller's network and every side's WAN */
  core: Host
  /** controller is the host for a controller or relay, on the backbone off the core */
  controller: Host
  sides: NatSide[]
  side: (name: string) => NatSide
  /** node finds a node host by name (`a1`, `b2`, ...) */
  node: (name: string) => Host
}

/** NATLAB_TABLE is the nftables table a NAT router's rules live in. */
export const NATLAB_TABLE = 'natlab'

/** natRules renders a router's nftables table: WAN on eth0, LAN on eth1. */
export function natRules (nat: NatKind, opts: { firstNode?: string, wgPort?: number } = {}): string {
  const t = `table inet ${NATLAB_TABLE}`
  if (nat === 'none') return `${t} {\n}\n`
  // nft 1.0.6 refuses `masquerade fully-random; }` on one line: the rule ends with a newline.
  const masquerade = nat === 'symmetric' ? 'oifname "eth0" masquerade fully-random' : 'oifname "eth0" masquerade'
  const lines = [`${t} {`,
    '  chain postrouting {',
    '    type nat hook postrouting priority srcnat; policy accept;',
    `    ${masquerade}`,
    '  }',
    '  chain forward {',
    '    type filter hook forward priority filter; policy drop;',
    '    ct state established,related accept',
    nat === 'udp-blocked' ? '    iifname "eth1" oifname "eth0" tcp dport 443 accept' : '    iifname "eth1" oifname "eth0" accept',
    ...(nat === 'full-cone' ? ['    iifname "eth0" oifname "eth1" ct status dnat accept'] : []),
    '  }']
  if (nat === 'full-cone') {
    if (opts.firstNode === undefined) throw new Error('a full-cone NAT needs a node to forward to')
    lines.push('  chain prerouting {',
      '    type nat hook prerouting priority dstnat; policy accept;',
      `    iifname "eth0" udp dport ${opts.wgPort ?? 41641} dnat ip to ${opts.firstNode}`,
      '  }')
  }
  lines.push('}')
  return lines.join('\n') + '\n'
}

async function sysctl (h: Host, key: string, value: string): Promise<void> {
  await h.exec(['sysctl', '-q', '-w', `${key}=${value}`])
}

/**
 * createNatLab builds the lab and registers its removal with t. Sides are built in the
 * order given; node hosts are named after their side (`a1`, `a2` for side `a`).
 */
export async function createNatLab (t: TestLike, opts: NatLabOptions): Promise<NatLab> {
  if (opts.sides.length === 0) throw new Error('a NAT lab needs at least one side')
  for (const s of opts.sides) {
    if (!/^[a-z0-9]{1,8}$/.test(s.name)) throw new Error(`NAT lab side name '${s.name}' must be 1-8 lowercase letters or digits`)
    if (!NAT_KINDS.includes(s.nat)) throw new Error(`NAT lab side '${s.name}': unknown NAT kind '${String(s.nat)}' (one of ${NAT_KINDS.join(', ')})`)
  }
  const topology = await createTopology(t, { hosts: [] })
  try {
    const core = await topology.addHost('core', { networks: [BACKBONE, ...opts.sides.map(s => `wan-${s.name}`)] })
    await sysctl(core, 'net.ipv4.ip_forward', '1')
    const coreOn = (net: string): string => core.interfaces.find(i => i.network === net)!.address
    const controller = await topology.addHost('controller')
    await controller.exec(['ip', 'route', 'add', 'default', 'via', coreOn(BACKBONE)])

    const sides: NatSide[] = []
    for (const s of opts.sides) {
      const router = await topology.addHost(`${s.name}-nat`, { networks: [`wan-${s.name}`, `lan-${s.name}`] })
      await sysctl(router, 'net.ipv4.ip_forward', '1')
      await router.exec(['ip', 'route', 'add', 'default', 'via', coreOn(`wan-${s.name}`)])
      const lan = topology.networks.find(n => n.name === `lan-${s.name}`)!
      const lanGateway = router.interfaces[1]!.address
      const nodes: Host[] = []
      for (let i = 1; i <= (s.nodes ?? 1); i++) {
        const node = await topology.addHost(`${s.name}${i}`, { networks: [lan.name] })
        await node.exec(['ip', 'route', 'add', 'default', 'via', lanGateway])
        nodes.push(node)
      }
      if (s.nat === 'none') await core.exec(['ip', 'route', 'add', lan.subnet, 'via', router.address])
      const rules = natRules(s.nat, { ...(nodes[0] !== undefined ? { firstNode: nodes[0].address } : {}), ...(s.wgPort !== undefined ? { wgPort: s.wgPort } : {}) })
      await router.exec(['nft', '-f', '-'], { input: rules })
      sides.push({ name: s.name, nat: s.nat, router, publicAddress: router.address, lanGateway, lan, nodes })
    }
    const side = (name: string): NatSide => {
      const found = sides.find(x => x.name === name)
      if (found === undefined) throw new Error(`the NAT lab has no side '${name}' (it has ${sides.map(x => x.name).join(', ')})`)
      return found
    }
    return { topology, core, controller, sides, side, node: name => topology.host(name) }
  } catch (e) {
    await topology.close()
    throw e
  }
}

/** NAT_TOOL_ARGV runs this file's UDP/TCP tool (see runNatTool) with this node binary. */
export const NAT_TOOL_ARGV = [process.execPath, compiledSelf(), 'nat-tool']

/** compiledSelf is this file as compiled JavaScript, also when a test runs it from its TypeScript source. */
function compiledSelf (): string {
  const here = fileURLToPath(import.meta.url)
  return here.endsWith('.ts') ? here.replace(/src\/nat-lab\.ts$/, 'dist/src/nat-lab.js') : here
}

/**
 * runNatTool is a tiny traffic tool run inside the lab's namespaces (`node nat-lab.js nat-tool ...`):
 * - `reflect PORT[,PORT...]`: answers every UDP datagram with the source it saw (`ADDR:PORT`),
 *   prints `ready` once bound;
 * - `probe BINDPORT HOST:PORT[,HOST:PORT...] [TIMEOUTMS]`: from one socket bound to BINDPORT,
 *   sends to each target and prints one line per target: what it answered, or `none`;
 * - `listen PORT`: prints `ready`, then `from ADDR:PORT HEX` for every datagram it receives;
 * - `answer PORT`: like listen, and answers each datagram with three that share a
 *   WireGuard port differently: a WireGuard-shaped one (`01000000...`), a STUN binding
 *   success naming the source it saw, and a Warren control packet (DiscoPong);
 * - `send BINDPORT HOST:PORT [HEX]`: sends one datagram (from BINDPORT, 0 for any) and exits;
 * - `tcp-listen PORT`: accepts TCP, writes `hello` to each connection, prints `ready`;
 * - `tcp-probe HOST PORT [TIMEOUTMS]`: prints `open` when it reads `hello`, else `closed`.
 */
export async function runNatTool (args: string[]): Promise<void> {
  const [mode, a, b, c] = args
  const bind = async (sock: UdpSocket, port: number): Promise<void> => await new Promise((resolve, reject) => {
    sock.once('error', reject)
    sock.bind(port, () => { sock.off('error', reject); resolve() })
  })
  const target = (s: string): { host: string, port: number } => {
    const at = s.lastIndexOf(':')
    return { host: s.slice(0, at), port: Number(s.slice(at + 1)) }
  }
  if (mode === 'reflect' && a !== undefined) {
    for (const port of a.split(',').map(Number)) {
      const sock = createSocket('udp4')
      sock.on('message', (_m, r) => sock.send(`${r.address}:${r.port}`, r.port, r.address))
      await bind(sock, port)
    }
    process.stdout.write('ready\n')
  } else if (mode === 'probe' && a !== undefined && b !== undefined) {
    const sock = createSocket('udp4')
    await bind(sock, Number(a))
    const timeoutMs = Number(c ?? 2000)
    for (const to of b.split(',').map(target)) {
      const answer = await new Promise<string>(resolve => {
        const timer = setTimeout(() => { sock.off('message', onMessage); resolve('none') }, timeoutMs)
        const onMessage = (m: Buffer, r: { address: string, port: number }): void => {
          if (r.address !== to.host || r.port !== to.port) return
          clearTimeout(timer); sock.off('message', onMessage); resolve(m.toString())
        }
        sock.on('message', onMessage)
        sock.send('probe', to.port, to.host)
      })
      process.stdout.write(`${answer}\n`)
    }
    sock.close()
  } else if ((mode === 'listen' || mode === 'answer') && a !== undefined) {
    const sock = createSocket('udp4')
    sock.on('message', (m, r) => {
      process.stdout.write(`from ${r.address}:${r.port} ${m.toString('hex')}\n`)
      if (mode !== 'answer') return
      const txid = new Uint8Array(12).fill(0x42)
      for (const reply of [Buffer.from('01000000776972656775617264', 'hex'), encodeStunBindingResponse(txid, { address: r.address, port: r.port }), encodeControl(ControlKind.DiscoPong, Buffer.from('pong'))]) {
        sock.send(reply, r.port, r.address)
      }
    })
    await bind(sock, Number(a))
    process.stdout.write('ready\n')
  } else if (mode === 'send' && a !== undefined && b !== undefined) {
    const sock = createSocket('udp4')
    await bind(sock, Number(a))
    const to = target(b)
    await new Promise<void>((resolve, reject) => sock.send(c === undefined ? Buffer.from('hello') : Buffer.from(c, 'hex'), to.port, to.host, e => { if (e !== null) reject(e); else resolve() }))
    sock.close()
  } else if (mode === 'tcp-listen' && a !== undefined) {
    const server = createServer(s => { s.end('hello') })
    await new Promise<void>(resolve => server.listen(Number(a), '0.0.0.0', resolve))
    process.stdout.write('ready\n')
  } else if (mode === 'tcp-probe' && a !== undefined && b !== undefined) {
    const sock = connect({ host: a, port: Number(b) })
    const verdict = await new Promise<string>(resolve => {
      const timer = setTimeout(() => resolve('closed'), Number(c ?? 2000))
      sock.on('data', d => { if (d.toString().includes('hello')) { clearTimeout(timer); resolve('open') } })
      sock.on('error', () => { clearTimeout(timer); resolve('closed') })
    })
    sock.destroy()
    process.stdout.write(`${verdict}\n`)
  } else {
    process.stderr.write('usage: nat-tool reflect PORT[,PORT...] | probe BINDPORT HOST:PORT[,...] [TIMEOUTMS] | listen PORT | answer PORT | send BINDPORT HOST:PORT [HEX] | tcp-listen PORT | tcp-probe HOST PORT [TIMEOUTMS]\n')
    process.exitCode = 2
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv[2] === 'nat-tool') await runNatTool(process.argv.slice(3))
