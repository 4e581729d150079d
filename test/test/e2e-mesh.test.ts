import t from 'tap'
import { mkdtempSync, rmSync, mkdirSync, writeFileSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { LocalStatus } from '@warren/protocol'
import { createAdminClient, createLocalClient } from '@warren/sdk'
import { createTopology, netnsSkipReason, execCommand, waitFor, type Host, type ProcessHandle } from '../src/index.js'

/**
 * End to end, with real processes: a controller and three daemons in their own network
 * namespaces join with an auth key, reach each other by MagicDNS name over WireGuard,
 * lose a deleted peer, survive the controller's death, and a killed daemon
 * comes back with the same identity.
 */
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..')
const WARREN = [process.execPath, join(root, 'cli', 'dist', 'src', 'bin', 'warren.js')]
const skip = netnsSkipReason()

interface Daemon {
  host: Host
  name: string
  stateDir: string
  socket: string
  iface: string
  /** the namespace's resolv.conf before Warren */
  resolv: string
  proc?: ProcessHandle
}

t.test('three nodes join, reach each other by name, and survive controller and daemon restarts', { skip, timeout: 580_000 }, async t => {
  const topo = await createTopology(t, { hosts: ['ctl', 'a', 'b', 'c'] })
  const dir = mkdtempSync(join(tmpdir(), 'warren-e2e-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const ctlHost = topo.host('ctl')
  const ctlDir = join(dir, 'controller')
  const listen = `${ctlHost.address}:8443`

  const warren = async (args: string[], host?: Host): Promise<string> => {
    const argv = [...WARREN, ...args]
    const r = host === undefined ? await execCommand(argv, { allowFail: true }) : await host.exec(argv, { allowFail: true })
    if (r.exitCode !== 0) throw new Error(`warren ${args.join(' ')} failed (exit ${r.exitCode}): ${r.stderr}${r.stdout}`)
    return r.stdout
  }
  const admin = async (...args: string[]): Promise<string> => await warren(['admin', '--state-dir', ctlDir, ...args])

  let controller: ProcessHandle
  const startController = async (): Promise<string> => {
    controller = ctlHost.spawn([...WARREN, 'controller', 'serve', '--state-dir', ctlDir, '--listen', listen])
    return (await controller.waitForLine(/listening on (https:\/\/\S+)/, 120_000))[1]!
  }
  const url = await startController()

  await admin('users', 'create', 'alice')
  const key = JSON.parse(await admin('keys', 'create', '--user', 'alice', '--reusable', '--preapproved', '--json')).key as string

  const daemons: Daemon[] = ['a', 'b', 'c'].map(name => {
    const host = topo.host(name)
    return { host, name, stateDir: join(dir, name), socket: join(dir, `${name}.sock`), iface: host.interfaceName(), resolv: `nameserver ${ctlHost.address}\n# original of ${name}\n` }
  })
  const startDaemon = (d: Daemon): void => {
    d.proc = d.host.spawn([...WARREN, 'node', 'run', '--state-dir', d.stateDir, '--socket', d.socket, '--interface', d.iface, '--wireguard', 'auto', '--log-level', 'debug'])
  }
  // Polled often: asked over the LocalAPI socket in this process, not by a CLI process each time.
  const status = async (d: Daemon): Promise<LocalStatus> => await createLocalClient({ socketPath: d.socket }).status()
  const pingByName = async (from: Daemon, name: string): Promise<boolean> =>
    (await from.host.exec(['ping', '-c', '1', '-W', '1', `${name}.warren.internal`], { allowFail: true })).exitCode === 0
  const wgPeers = async (d: Daemon): Promise<string[]> =>
    (await d.host.exec(['wg', 'show', d.iface, 'peers'], { allowFail: true })).stdout.split('\n').filter(Boolean)

  t.teardown(() => {
    // On failure, what the processes said is the best clue.
    if (t.passing()) return
    t.comment(`controller output:\n${controller.output().slice(-3000)}`)
    for (const d of daemons) t.comment(`daemon ${d.name} output:\n${d.proc?.output().slice(-6000) ?? ''}`)
  })
  for (const d of daemons) {
    // `ip netns exec` puts this file over /etc/resolv.conf: MagicDNS takes it over and gives it back.
    mkdirSync(`/etc/netns/${d.host.netns}`, { recursive: true })
    writeFileSync(`/etc/netns/${d.host.netns}/resolv.conf`, d.resolv)
    startDaemon(d)
  }
  for (const d of daemons) {
    await d.proc!.waitForLine(/warrend started/, 120_000)
    const out = await warren(['up', '--socket', d.socket, '--controller', url, '--auth-key', key, '--hostname', d.name, '--timeout', '120s'])
    t.match(out, new RegExp(`up: ${d.name}\\.warren\\.internal`), `${d.name} is up`)
  }
  const [a, b, c] = daemons as [Daemon, Daemon, Daemon]

  await t.test('every node pings every other by MagicDNS name over the mesh', async t => {
    for (const from of daemons) {
      for (const to of daemons) {
        if (from === to) continue
        await waitFor(async () => await pingByName(from, to.name), { timeoutMs: 120_000, message: `${from.name} pinging ${to.name}.warren.internal` })
      }
    }
    const st = await status(a)
    t.equal(st.backendState, 'Running')
    t.same(st.peers.map(p => p.name).sort(), ['b', 'c'])
    t.ok(st.peers.every(p => p.lastHandshake !== undefined && p.rxBytes > 0), 'handshakes and traffic show in status')
    const human = await warren(['status', '--socket', a.socket])
    t.comment(human)
    t.match(human, /^state: Running, controller https:\S+ \(connected\)$/m)
    t.match(human, /^b\s+100\.\S+\s+yes\s+(just now|\d+s ago)\s+(-|direct [\d.]+ ms)\s+10\.\S+:\d+\s/m, 'the table shows b online, its handshake, path and endpoint')
    t.match(await warren(['ping', '--socket', a.socket, 'b']), /pong from b \(100\.\d+\.\d+\.\d+\)/)
    const bIp = (await warren(['ip', '-4', '--socket', a.socket, 'b'])).trim()
    t.match(await warren(['whois', '--socket', a.socket, bIp]), /node: b[\s\S]*user: alice/)
    t.match(readFileSync(`/etc/netns/${a.host.netns}/resolv.conf`, 'utf8'), /nameserver 100\.100\.100\.100/, 'the resolver points at MagicDNS')
  })

  await t.test('a node deleted by an admin drops out of the others', async t => {
    const cKey = (await status(c)).self!.wgKey
    t.ok((await wgPeers(a)).includes(cKey))
    // Through the admin socket in process, so that the figure logged below counts no CLI start-up time.
    const adminClient = createAdminClient({ stateDir: ctlDir })
    t.teardown(() => adminClient.close())
    const started = Date.now()
    await adminClient.nodes.delete('c')
    await waitFor(async () => !(await wgPeers(a)).includes(cKey) && !(await wgPeers(b)).includes(cKey), { timeoutMs: 120_000, intervalMs: 20, message: 'c gone from the WireGuard peers of a and b' })
    t.comment(`gone after ${Date.now() - started} ms`)
    t.notOk(await pingByName(a, 'c'), 'c no longer resolves or answers')
    await waitFor(async () => (await status(c)).backendState === 'NeedsLogin', { timeoutMs: 120_000, message: 'c told it needs a login' })
  })

  await t.test('a node joining with a key that needs approval waits, and runs once approved', async t => {
    const approvalKey = JSON.parse(await admin('keys', 'create', '--user', 'alice', '--json')).key as string
    const out = await warren(['up', '--socket', c.socket, '--controller', url, '--auth-key', approvalKey, '--hostname', 'c', '--timeout', '120s'])
    t.match(out, /an admin must approve it first: on the controller run 'warren admin nodes approve c'/)
    t.equal((await status(c)).backendState, 'NeedsApproval')
    t.notOk((await wgPeers(a)).includes((await status(c)).self!.wgKey), 'a pending node is nobody\'s peer')
    await admin('nodes', 'approve', 'c')
    await waitFor(async () => (await status(c)).backendState === 'Running', { timeoutMs: 120_000, message: 'c running after approval' })
    await waitFor(async () => await pingByName(a, 'c') && await pingByName(c, 'a'), { timeoutMs: 120_000, message: 'a and c reaching each other' })
  })

  await t.test('the mesh keeps working without the controller, and nodes resync when it returns', async t => {
    await controller.kill('SIGKILL')
    await waitFor(async () => (await status(a)).controller?.connected === false, { timeoutMs: 120_000, message: 'a notices the controller is gone' })
    t.ok(await pingByName(a, 'b'), 'a still reaches b by name')
    t.ok(await pingByName(b, 'a'), 'b still reaches a by name')
    await startController()
    await waitFor(async () => (await status(a)).controller?.connected === true && (await status(b)).controller?.connected === true, { timeoutMs: 120_000, message: 'a and b reconnected' })
    // A change made after the return reaches the nodes: the sessions are live again.
    await admin('nodes', 'rename', 'b', 'bee')
    await waitFor(async () => await pingByName(a, 'bee'), { timeoutMs: 120_000, message: 'a resolving the renamed b' })
    b.name = 'bee'
  })

  await t.test('a killed daemon leaves the data plane up and comes back with the same state', async t => {
    const before = await status(a)
    await a.proc!.kill('SIGKILL')
    t.ok((await a.host.exec(['wg', 'show', a.iface], { allowFail: true })).exitCode === 0, 'the WireGuard interface outlives the daemon')
    t.ok((await a.host.exec(['nft', 'list', 'table', 'inet', 'warren'], { allowFail: true })).exitCode === 0, 'so does the nftables table (fail-closed)')
    startDaemon(a)
    await a.proc!.waitForLine(/warrend started/, 120_000)
    const after = await status(a)
    t.equal(after.backendState, 'Running')
    t.same([after.self!.wgKey, after.self!.ipv4, after.self!.ipv6], [before.self!.wgKey, before.self!.ipv4, before.self!.ipv6], 'same keys and addresses')
    t.same(after.peers.map(p => p.name), before.peers.map(p => p.name))
    await waitFor(async () => await pingByName(a, 'bee') && await pingByName(b, 'a'), { timeoutMs: 120_000, message: 'the restarted a reaches bee and back' })
    await waitFor(async () => (await status(a)).controller?.connected === true, { timeoutMs: 120_000, message: 'a reconnected' })
  })

  await t.test('down removes the interface and the firewall table and restores the resolver', async t => {
    t.match(await warren(['down', '--socket', b.socket]), /down/)
    t.not((await b.host.exec(['ip', 'link', 'show', b.iface], { allowFail: true })).exitCode, 0, 'interface removed')
    t.not((await b.host.exec(['nft', 'list', 'table', 'inet', 'warren'], { allowFail: true })).exitCode, 0, 'nftables table removed')
    t.equal(readFileSync(`/etc/netns/${b.host.netns}/resolv.conf`, 'utf8'), b.resolv, 'resolv.conf restored exactly')
    t.equal((await status(b)).backendState, 'Stopped')
  })
})
