import { WarrenError, type DataPlaneInfo } from '@warren/protocol'
import { type CommandRunner, withSecretFile } from '../runner/command-runner.js'
import { checkInterfaceName } from '../router/cidr.js'
import type { WireGuard, WireGuardBackend, WireGuardConfig, WireGuardMode, WireGuardStatus, WireGuardChanges } from './types.js'
import { checkWireGuardConfig, parseWireGuardDump, planWireGuard, planChanges, wgSetCommands, withoutPrivateKey, PRIVATE_KEY_FILE, type WireGuardDevice } from './wireguard-plan.js'
import { chooseWireGuardGo, installedCandidates, runningWireGuardGo, wireGuardGoCandidates } from './wireguard-go-builds.js'

/** WireGuardOptions configure createWireGuard. */
export interface WireGuardOptions {
  runner: CommandRunner
  interfaceName: string
  /** default `auto`: kernel WireGuard when `ip link add ... type wireguard` works, else wireguard-go */
  mode?: WireGuardMode
  /** the wireguard-go program to use; default the newest of those in PATH and the usual directories */
  wireguardGo?: string
  /** where to look for wireguard-go when none is given (default: from PATH, see wireGuardGoCandidates) */
  wireguardGoCandidates?: string[]
  /** how long close() waits for wireguard-go to let go of its socket; default 3 s */
  closeTimeoutMs?: number
}

/**
 * detectKernelWireGuard says whether this kernel can make WireGuard interfaces, by
 * creating and deleting a probe interface.
 */
export async function detectKernelWireGuard (runner: CommandRunner): Promise<boolean> {
  const probe = `wgprobe${Math.random().toString(36).slice(2, 8)}`
  const r = await runner.run(['ip', 'link', 'add', probe, 'type', 'wireguard'], { allowFail: true })
  if (r.exitCode !== 0) return false
  await runner.run(['ip', 'link', 'del', probe], { allowFail: true })
  return true
}

/**
 * createWireGuard returns the real adapter. With wireguard-go, the program daemonizes on
 * its own (Warren does not hold it as a child), so the interface and its peers outlive a
 * crashed daemon: enforcement stays in place (fail-closed) and a restarted daemon adopts
 * the interface. close() deletes the link, which also ends wireguard-go.
 */
export function createWireGuard (opts: WireGuardOptions): WireGuard {
  checkInterfaceName(opts.interfaceName)
  const { runner, interfaceName } = opts
  const mode = opts.mode ?? 'auto'
  if (!['auto', 'kernel', 'userspace'].includes(mode)) {
    throw new WarrenError('bad_config', `WireGuard mode '${String(mode)}' is not one of auto, kernel, userspace`, { field: 'mode' })
  }
  let backend: WireGuardBackend | undefined
  let info: DataPlaneInfo | undefined
  const lastEndpoints = new Map<string, string>()

  async function readDevice (): Promise<WireGuardDevice | undefined> {
    const r = await runner.run(['wg', 'show', interfaceName, 'dump'], { allowFail: true })
    return r.exitCode === 0 ? parseWireGuardDump(interfaceName, r.stdout) : undefined
  }

  async function linkKind (): Promise<string | undefined> {
    const r = await runner.run(['ip', '-d', '-j', 'link', 'show', 'dev', interfaceName], { allowFail: true })
    if (r.exitCode !== 0) return undefined
    const links = JSON.parse(r.stdout) as Array<{ linkinfo?: { info_kind?: string } }>
    return links[0]?.linkinfo?.info_kind ?? 'unknown'
  }

  /** startUserspace starts the newest wireguard-go (or the one asked for) and says which it was. */
  async function startUserspace (): Promise<DataPlaneInfo> {
    const candidates = opts.wireguardGo !== undefined
      ? [opts.wireguardGo]
      : opts.wireguardGoCandidates ?? installedCandidates(wireGuardGoCandidates(process.env.PATH))
    const build = await chooseWireGuardGo(runner, candidates)
    // No foreground flag and no LOG_LEVEL: wireguard-go forks a detached child with
    // its output on /dev/null, so this command returns once the interface exists.
    await runner.run([build.path, interfaceName], { env: { WG_PROCESS_FOREGROUND: undefined, LOG_LEVEL: undefined } })
    return { implementation: 'wireguard-go', ...build }
  }

  async function up (): Promise<WireGuardBackend> {
    if (backend !== undefined) return backend
    const kind = await linkKind()
    const answers = await readDevice() !== undefined
    if (answers && kind !== undefined) {
      // Left by an earlier run of the daemon: adopt it with its peers, so sessions go on.
      backend = kind === 'wireguard' ? 'kernel' : 'userspace'
      info = backend === 'kernel' ? { implementation: 'kernel' } : await runningWireGuardGo(runner, interfaceName)
      return backend
    }
    if (answers) {
      // wireguard-go's control sockets are shared by all network namespaces.
      throw new WarrenError('interface_busy',
        `a WireGuard interface named ${interfaceName} is run by wireguard-go in another network namespace (its control socket in /var/run/wireguard is shared): choose another name with --interface`,
        { status: 409 })
    }
    if (kind !== undefined) {
      throw new WarrenError('interface_busy',
        `interface ${interfaceName} already exists and is not WireGuard (it is ${kind}): choose another name with --interface, or remove it with 'ip link del ${interfaceName}'`,
        { status: 409 })
    }
    if (mode !== 'userspace') {
      const r = await runner.run(['ip', 'link', 'add', interfaceName, 'type', 'wireguard'], { allowFail: true })
      if (r.exitCode === 0) {
        backend = 'kernel'
        info = { implementation: 'kernel' }
        return backend
      }
      if (mode === 'kernel') {
        throw new WarrenError('wireguard_unavailable',
          `kernel WireGuard is not available: \`ip link add ${interfaceName} type wireguard\` failed (exit ${r.exitCode}): ${r.stderr.trim()}; ` +
          'load the module (modprobe wireguard) or use --wireguard auto or userspace to run wireguard-go',
          { status: 500 })
      }
    }
    info = await startUserspace()
    backend = 'userspace'
    return backend
  }

  async function set (desired: WireGuardConfig): Promise<WireGuardChanges> {
    const want = checkWireGuardConfig(desired)
    if (want.interfaceName !== interfaceName) {
      throw new WarrenError('bad_config', `WireGuard config is for interface '${want.interfaceName}' but this adapter manages '${interfaceName}'`, { field: 'interfaceName' })
    }
    await up()
    let current = await readDevice()
    if (current === undefined) {
      // Deleted behind our back (or wireguard-go died): make it again, with all peers.
      backend = undefined
      lastEndpoints.clear()
      await up()
      current = await readDevice()
    }
    if (current === undefined) {
      backend = undefined
      throw new WarrenError('wireguard_gone', `WireGuard interface ${interfaceName} disappeared right after being created; is something deleting it?`, { status: 500 })
    }
    const plan = planWireGuard(current, want, lastEndpoints)
    for (const argv of wgSetCommands(interfaceName, plan)) {
      if (!argv.includes(PRIVATE_KEY_FILE)) {
        await runner.run(argv)
        continue
      }
      await withSecretFile(plan.privateKey + '\n', async path => await runner.run(argv.map(a => a === PRIVATE_KEY_FILE ? path : a)))
    }
    for (const key of plan.remove) lastEndpoints.delete(key)
    for (const p of want.peers) if (p.endpoint !== undefined) lastEndpoints.set(p.publicKey, p.endpoint)
    return planChanges(plan)
  }

  async function status (): Promise<WireGuardStatus> {
    const d = await readDevice()
    if (d === undefined) throw new WarrenError('wireguard_down', `WireGuard interface ${interfaceName} does not exist: run 'warren up' first`, { status: 409 })
    return withoutPrivateKey(d)
  }

  async function close (): Promise<void> {
    await runner.run(['ip', 'link', 'del', 'dev', interfaceName], { allowFail: true })
    backend = undefined
    info = undefined
    lastEndpoints.clear()
    // wireguard-go notices the deleted link and exits, removing its control socket;
    // wait for that so a quick `up` with the same name does not meet the old one.
    const deadline = Date.now() + (opts.closeTimeoutMs ?? 3000)
    while (await readDevice() !== undefined) {
      if (Date.now() > deadline) {
        throw new WarrenError('wireguard_busy', `WireGuard interface ${interfaceName} still answers after being deleted; is another wireguard-go holding it?`, { status: 500 })
      }
      await new Promise(resolve => setTimeout(resolve, 50))
    }
  }

  return { interfaceName, up, set, status, close, implementation: () => info }
}
