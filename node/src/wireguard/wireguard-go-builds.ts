import { realpathSync } from 'node:fs'
import { join } from 'node:path'
import { WarrenError, type DataPlaneInfo } from '@warren/protocol'
import type { CommandRunner } from '../runner/command-runner.js'

/** WIREGUARD_GO_DIRS are the places a wireguard-go program is looked for besides PATH. */
export const WIREGUARD_GO_DIRS = ['/usr/bin', '/usr/local/bin', '/usr/sbin'] as const

/**
 * FAST_WIREGUARD_GO is the first `--version` with batched, segmentation-offloaded I/O.
 * Older builds (Debian bookworm's 0.0.20220316) carry TCP at a fraction of the speed.
 * Upstream's 0.0.20231211 still prints 0.0.20230223, so that is what this says.
 */
export const FAST_WIREGUARD_GO = '0.0.20230223'

/** WireGuardGoBuild is one wireguard-go program found on this host. */
export interface WireGuardGoBuild {
  path: string
  /** what `--version` printed ("0.0.20230223"); absent when it printed no version */
  version?: string
  /** the package that installed it, with its version ("wireguard-go 0.0.20231211-1~bpo12+1") */
  package?: string
}

/**
 * wireGuardGoCandidates lists where to look, in order of preference on a tie: an explicit
 * program alone when one is given, else `wireguard-go` in each PATH directory and then in
 * WIREGUARD_GO_DIRS, each path once.
 */
export function wireGuardGoCandidates (pathEnv: string | undefined, explicit?: string): string[] {
  if (explicit !== undefined && explicit !== '') return [explicit]
  const dirs = [...(pathEnv ?? '').split(':').filter(d => d.startsWith('/')), ...WIREGUARD_GO_DIRS]
  return [...new Set(dirs.map(d => join(d, 'wireguard-go')))]
}

/**
 * installedCandidates keeps the candidates that exist, each file once under its real path
 * (on a merged /usr, /bin/wireguard-go is /usr/bin/wireguard-go), so no time goes on
 * starting programs that are not there or twice.
 */
export function installedCandidates (paths: readonly string[]): string[] {
  const real = paths.flatMap(p => { try { return [realpathSync(p)] } catch { return [] } })
  return [...new Set(real)]
}

/** parseWireGuardGoVersion reads "wireguard-go v0.0.20230223" (the first line of `--version`). */
export function parseWireGuardGoVersion (stdout: string): string | undefined {
  return /wireguard-go v?(\d+(?:\.\d+)+)/.exec(stdout)?.[1]
}

/** compareVersions orders dotted numeric versions ("0.0.20220316" < "0.0.20230223"); absent sorts first. */
export function compareVersions (a: string | undefined, b: string | undefined): number {
  if (a === undefined || b === undefined) return a === b ? 0 : a === undefined ? -1 : 1
  const pa = a.split('.').map(Number)
  const pb = b.split('.').map(Number)
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0)
    if (d !== 0) return Math.sign(d)
  }
  return 0
}

/** packageUpstream is the upstream part of a package version: "wireguard-go 0.0.20231211-1~bpo12+1" -> "0.0.20231211". */
function packageUpstream (pkg: string | undefined): string | undefined {
  return pkg === undefined ? undefined : /\s(?:\d+:)?(\d+(?:\.\d+)+)/.exec(pkg)?.[1]
}

/**
 * rankWireGuardGoBuilds sorts the newest first: by `--version`, then by the package's
 * version (upstream 0.0.20231211 prints the same `--version` as 0.0.20230223), then by
 * the order they were found in.
 */
export function rankWireGuardGoBuilds (builds: readonly WireGuardGoBuild[]): WireGuardGoBuild[] {
  return builds.map((b, i) => ({ b, i })).sort((x, y) =>
    compareVersions(y.b.version, x.b.version) ||
    compareVersions(packageUpstream(y.b.package), packageUpstream(x.b.package)) ||
    x.i - y.i
  ).map(x => x.b)
}

/**
 * debianPackage reads the version and files of the installed wireguard-go package;
 * undefined off Debian or when it is not installed. (`dpkg-query -S FILE` would name any
 * package, but reads every package's file list: half a second here.)
 */
async function debianPackage (runner: CommandRunner): Promise<{ version: string, files: Set<string> } | undefined> {
  const ask = async (argv: string[]): Promise<string | undefined> => {
    const r = await runner.run(argv, { allowFail: true }).catch(() => undefined)
    return r?.exitCode === 0 && r.stdout.trim() !== '' ? r.stdout : undefined
  }
  const version = await ask(['dpkg-query', '-W', '-f=${db:Status-Status} ${Version}', 'wireguard-go'])
  const m = version === undefined ? null : /^installed (\S+)/.exec(version.trim())
  if (m === null) return undefined
  const files = await ask(['dpkg-query', '-L', 'wireguard-go'])
  return { version: m[1]!, files: new Set((files ?? '').split('\n').map(l => l.trim())) }
}

/**
 * chooseWireGuardGo runs `--version` on each candidate and returns the newest build that
 * answers, with the package that installed it. When none answers, the error names the
 * places it looked and the packages to install.
 */
export async function chooseWireGuardGo (runner: CommandRunner, candidates: readonly string[]): Promise<WireGuardGoBuild> {
  const found: WireGuardGoBuild[] = []
  const failures: string[] = []
  for (const path of candidates) {
    const r = await runner.run([path, '--version'], { allowFail: true }).catch((e: Error) => ({ exitCode: -1, stdout: '', stderr: e.message }))
    if (r.exitCode !== 0) {
      failures.push(`${path}: ${r.stderr.trim().split('\n')[0] ?? ''} (exit ${r.exitCode})`)
      continue
    }
    const version = parseWireGuardGoVersion(r.stdout)
    found.push({ path, ...(version !== undefined ? { version } : {}) })
  }
  if (found.length === 0) {
    const where = candidates.length === 1 ? candidates[0]! : `PATH and ${WIREGUARD_GO_DIRS.join(', ')}`
    throw new WarrenError('wireguard_unavailable',
      `kernel WireGuard is not available and no wireguard-go runs (looked for ${where}): install the wireguard-go package ` +
      '(on Debian bookworm from bookworm-backports: apt-get install -t bookworm-backports wireguard-go; test/setup-system.sh does it) ' +
      'together with wireguard-tools, or load the wireguard kernel module' +
      (candidates.length === 1 ? `, or point --wireguard-go at a working program (${failures[0] ?? ''})` : ''),
      { status: 500 })
  }
  const pkg = await debianPackage(runner)
  for (const b of found) if (pkg?.files.has(b.path) === true) b.package = `wireguard-go ${pkg.version}`
  return rankWireGuardGoBuilds(found)[0]!
}

/**
 * runningWireGuardGo says which program runs an interface an earlier daemon started: the
 * wireguard-go process whose last argument is the interface's name (unique on the host, as
 * wireguard-go's control sockets are shared by all namespaces). When its file was replaced
 * since it started (an upgrade), the running build is the old one and no version is given.
 */
export async function runningWireGuardGo (runner: CommandRunner, interfaceName: string): Promise<DataPlaneInfo> {
  const base: DataPlaneInfo = { implementation: 'wireguard-go' }
  const ask = async (argv: string[]): Promise<string> => {
    const r = await runner.run(argv, { allowFail: true }).catch(() => undefined)
    return r?.exitCode === 0 ? r.stdout.trim() : ''
  }
  const pid = (await ask(['pgrep', '-a', '-x', 'wireguard-go'])).split('\n')
    .map(l => l.trim().split(/\s+/)).find(words => words.at(-1) === interfaceName)?.[0]
  if (pid === undefined || !/^\d+$/.test(pid)) return base
  const exe = await ask(['readlink', `/proc/${pid}/exe`])
  if (!exe.startsWith('/')) return base
  if (exe.endsWith(' (deleted)')) return { ...base, path: exe.slice(0, -' (deleted)'.length), replaced: true }
  const build = await chooseWireGuardGo(runner, [exe]).catch(() => undefined)
  return { ...base, ...(build ?? { path: exe }) }
}
