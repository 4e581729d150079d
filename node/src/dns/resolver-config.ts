import fs from 'node:fs/promises'
import net from 'node:net'
import path from 'node:path'
import { MAGIC_DNS_IPV4, MAGIC_DNS_IPV6, WarrenError, isDomain } from '@warren/protocol'
import type { CommandRunner } from '../runner/index.js'

/**
 * resolver-config.ts points the host's resolver at MagicDNS and puts it back exactly.
 * With systemd-resolved it sets per-link DNS and a routing domain on the mesh interface,
 * so only mesh names come to us. Otherwise it manages resolv.conf: the original is kept
 * in a backup (file or symlink, mode, owner, exact bytes) and `restore()` writes it back
 * byte for byte. A backup found at start means the daemon died while managing the file,
 * so the backup, not our own file, stays the original.
 */

/** ResolverMode says how the host resolver was pointed at MagicDNS. */
export type ResolverMode = 'resolved' | 'file'

/** HostResolverOptions say which interface and files the configurator may touch. */
export interface HostResolverOptions {
  /** the mesh interface, for systemd-resolved's per-link settings */
  interfaceName: string
  /** the address MagicDNS listens on; default MAGIC_DNS_IPV4 */
  nameserver?: string
  /** default /etc/resolv.conf; in a network namespace /etc/netns/<ns>/resolv.conf */
  resolvConfPath?: string
  /** where the original is kept; default defaultBackupPath(resolvConfPath) */
  backupPath?: string
  /** runs resolvectl; without one only the resolv.conf mode is used */
  runner?: CommandRunner
  /** default auto: systemd-resolved when resolv.conf points at its stub and resolvectl works */
  mode?: 'auto' | ResolverMode
}

/** ResolverApplyResult says what apply did and where non-mesh names should go. */
export interface ResolverApplyResult {
  mode: ResolverMode
  /** the original resolver's nameservers, MagicDNS itself left out: MagicDNS's upstreams */
  upstreams: string[]
}

/** HostResolverConfigurator points the host's resolver at MagicDNS and back. */
export interface HostResolverConfigurator {
  /** apply points the host at MagicDNS for `domain`; calling it again is safe */
  apply: (domain: string) => Promise<ResolverApplyResult>
  /** restore puts the original back exactly; safe to call when nothing was applied */
  restore: () => Promise<void>
}

/**
 * defaultBackupPath is `<file>.warren-backup`, except for /etc/netns/<ns>/<file>: there it
 * is /etc/netns/<ns>.<file>.warren-backup, because `ip netns exec` bind-mounts every file
 * in /etc/netns/<ns>/ over /etc and warns about one that /etc lacks.
 */
export function defaultBackupPath (file: string): string {
  const dir = path.dirname(file)
  if (path.dirname(dir) === '/etc/netns') return `${dir}.${path.basename(file)}.warren-backup`
  return `${file}.warren-backup`
}

/** MANAGED_MARKER opens every resolv.conf that Warren writes, so a restart knows it is ours. */
export const MANAGED_MARKER = '# Warren manages this file (MagicDNS).'

/** SYSTEMD_RESOLVED_STUBS are the addresses of systemd-resolved's local stub listener. */
const SYSTEMD_RESOLVED_STUBS = new Set(['127.0.0.53', '127.0.0.54'])

/** ResolvConfBackup is the backup file's content: the original, whatever kind it was. */
type ResolvConfBackup =
  | { warrenResolvConfBackup: 1, kind: 'file', mode: number, uid: number, gid: number, content: string }
  | { warrenResolvConfBackup: 1, kind: 'symlink', target: string, content: string }
  | { warrenResolvConfBackup: 1, kind: 'absent' }

/** ParsedResolvConf holds the lines of a resolv.conf that matter to Warren. */
export interface ParsedResolvConf {
  nameservers: string[]
  search: string[]
  options: string[]
}

/** parseResolvConf reads nameserver, search/domain and options lines (as glibc does). */
export function parseResolvConf (text: string): ParsedResolvConf {
  const out: ParsedResolvConf = { nameservers: [], search: [], options: [] }
  for (const raw of text.split('\n')) {
    const line = raw.replace(/[#;].*$/, '').trim()
    const [key, ...rest] = line.split(/\s+/)
    if (key === 'nameserver' && rest[0] !== undefined) out.nameservers.push(rest[0])
    else if (key === 'search' || key === 'domain') out.search = rest
    else if (key === 'options') out.options.push(rest.join(' '))
  }
  return out
}

/** upstreamsOf lists a resolv.conf's nameservers that MagicDNS may forward to (never itself). */
export function upstreamsOf (text: string): string[] {
  return parseResolvConf(text).nameservers.filter(ns =>
    net.isIP(ns.split('%')[0]!) !== 0 && ns !== MAGIC_DNS_IPV4 && ns.toLowerCase() !== MAGIC_DNS_IPV6)
}

/** managedResolvConf is the resolv.conf Warren writes; the original's search and options stay. */
export function managedResolvConf (opts: { domain: string, nameserver: string, backupPath: string, original: string }): string {
  const orig = parseResolvConf(opts.original)
  const search = [opts.domain, ...orig.search.filter(s => s.toLowerCase() !== opts.domain)]
  return [
    MANAGED_MARKER,
    `# \`warren down\` restores the original, kept in ${opts.backupPath}. Edits here are overwritten.`,
    `nameserver ${opts.nameserver}`,
    `search ${search.join(' ')}`,
    ...orig.options.map(o => `options ${o}`),
    ''
  ].join('\n')
}

const isManaged = (content: string | undefined): boolean => content?.startsWith(MANAGED_MARKER) === true

const errCode = (e: unknown): string | undefined => (e as NodeJS.ErrnoException).code

/** snapshot reads what is at `file` now, without following a symlink for its kind. */
async function snapshot (file: string): Promise<ResolvConfBackup> {
  let st
  try {
    st = await fs.lstat(file)
  } catch (e) {
    if (errCode(e) === 'ENOENT') return { warrenResolvConfBackup: 1, kind: 'absent' }
    throw e
  }
  if (st.isSymbolicLink()) {
    const target = await fs.readlink(file)
    const content = await fs.readFile(file).then(b => b.toString('base64'), () => '')
    return { warrenResolvConfBackup: 1, kind: 'symlink', target, content }
  }
  if (!st.isFile()) throw new WarrenError('resolv_conf_unsupported', `${file} is neither a file nor a symlink: Warren cannot manage it; point the resolver at ${MAGIC_DNS_IPV4} by hand`, { status: 500 })
  const content = (await fs.readFile(file)).toString('base64')
  return { warrenResolvConfBackup: 1, kind: 'file', mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, content }
}

const contentOf = (b: ResolvConfBackup): string => b.kind === 'absent' ? '' : Buffer.from(b.content, 'base64').toString('utf8')

/** replaceAtomically writes a sibling temp file and renames it over `file`. */
async function replaceAtomically (file: string, write: (tmp: string) => Promise<void>): Promise<void> {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.warren-${process.pid}-${Date.now()}`)
  try {
    await write(tmp)
    await fs.rename(tmp, file)
  } catch (e) {
    await fs.rm(tmp, { force: true })
    throw e
  }
}

/**
 * writeRegularFile puts `data` at `file`. An existing regular file is rewritten in place
 * (same inode), because resolv.conf is often bind-mounted (containers, `ip netns exec`)
 * and a rename would leave the mount on the old file; otherwise (symlink or nothing) a
 * new file is renamed into place, which replaces a symlink instead of its target.
 */
async function writeRegularFile (file: string, data: Buffer | string, mode: number, owner?: { uid: number, gid: number }): Promise<void> {
  const st = await fs.lstat(file).catch(() => undefined)
  if (st?.isFile() === true) {
    await fs.writeFile(file, data)
    await fs.chmod(file, mode)
    if (owner !== undefined) await fs.chown(file, owner.uid, owner.gid)
    return
  }
  await replaceAtomically(file, async tmp => {
    await fs.writeFile(tmp, data, { mode })
    await fs.chmod(tmp, mode)
    if (owner !== undefined) await fs.chown(tmp, owner.uid, owner.gid)
  })
}

/** createHostResolverConfigurator makes the real configurator (files and resolvectl). */
export function createHostResolverConfigurator (opts: HostResolverOptions): HostResolverConfigurator {
  const file = opts.resolvConfPath ?? '/etc/resolv.conf'
  const backupPath = opts.backupPath ?? defaultBackupPath(file)
  const nameserver = opts.nameserver ?? MAGIC_DNS_IPV4
  let applied: ResolverMode | undefined

  const readBackup = async (): Promise<ResolvConfBackup | undefined> => {
    let text: string
    try {
      text = await fs.readFile(backupPath, 'utf8')
    } catch (e) {
      if (errCode(e) === 'ENOENT') return undefined
      throw e
    }
    try {
      const b = JSON.parse(text) as ResolvConfBackup
      if (b.warrenResolvConfBackup === 1 && ['file', 'symlink', 'absent'].includes(b.kind)) return b
    } catch {}
    throw new WarrenError('resolv_conf_backup_corrupt',
      `the resolv.conf backup ${backupPath} is not one Warren wrote: check it, restore ${file} by hand and delete the backup`, { status: 500 })
  }

  /** original returns what the host had before Warren: the backup if ours is in place. */
  const original = async (): Promise<{ backup: ResolvConfBackup, fromBackup: boolean }> => {
    const now = await snapshot(file)
    const saved = await readBackup()
    if (saved !== undefined && (isManaged(contentOf(now)) || now.kind === 'absent')) return { backup: saved, fromBackup: true }
    // No backup, or the host rewrote the file since (DHCP, an admin): what is there now is the original.
    return { backup: now, fromBackup: false }
  }

  const resolvedWorks = async (): Promise<boolean> => {
    if (opts.runner === undefined) return false
    try {
      const r = await opts.runner.run(['resolvectl', 'status', '--no-pager'], { allowFail: true })
      return r.exitCode === 0
    } catch {
      return false
    }
  }

  const applyResolved = async (domain: string): Promise<void> => {
    if (opts.runner === undefined) {
      throw new WarrenError('resolver_no_runner', 'systemd-resolved mode needs a command runner for resolvectl: pass one, or use mode \'file\'', { status: 500 })
    }
    const run = opts.runner.run
    const link = opts.interfaceName
    await run(['resolvectl', 'dns', link, nameserver])
    await run(['resolvectl', 'domain', link, `~${domain}`])
    // Older systemd lacks default-route; a link with only routing domains is not default anyway.
    await run(['resolvectl', 'default-route', link, 'false'], { allowFail: true })
  }

  const applyFile = async (domain: string, orig: ResolvConfBackup, fromBackup: boolean): Promise<void> => {
    if (!fromBackup) {
      if (isManaged(contentOf(orig))) {
        throw new WarrenError('resolv_conf_backup_missing',
          `${file} is Warren's own but its backup ${backupPath} is gone, so the original is lost: write ${file} by hand, then start again`, { status: 500 })
      }
      // The backup is complete on disk before our file replaces the original.
      await replaceAtomically(backupPath, async tmp => {
        const fh = await fs.open(tmp, 'w', 0o600)
        try {
          await fh.writeFile(JSON.stringify(orig) + '\n')
          await fh.sync()
        } finally {
          await fh.close()
        }
      })
    }
    const text = managedResolvConf({ domain, nameserver, backupPath, original: contentOf(orig) })
    await writeRegularFile(file, text, 0o644)
  }

  return {
    async apply (domain: string) {
      const d = domain.toLowerCase().replace(/\.$/, '')
      if (!isDomain(d)) {
        throw new WarrenError('bad_domain', `MagicDNS domain '${domain}' is not a DNS domain: use labels of lowercase letters, digits and hyphens, such as warren.internal`, { field: 'domain' })
      }
      const { backup: orig, fromBackup } = await original()
      const text = contentOf(orig)
      const upstreams = upstreamsOf(text)
      const wantResolved = opts.mode === 'resolved' ||
        (opts.mode !== 'file' && parseResolvConf(text).nameservers.some(ns => SYSTEMD_RESOLVED_STUBS.has(ns)) && await resolvedWorks())
      if (wantResolved && !fromBackup) {
        await applyResolved(d)
        applied = 'resolved'
      } else {
        await applyFile(d, orig, fromBackup)
        applied = 'file'
      }
      return { mode: applied, upstreams }
    },

    async restore () {
      if (applied === 'resolved') {
        await opts.runner?.run(['resolvectl', 'revert', opts.interfaceName], { allowFail: true })
      }
      applied = undefined
      const saved = await readBackup()
      if (saved === undefined) return
      const now = await snapshot(file)
      if (isManaged(contentOf(now)) || now.kind === 'absent') {
        if (saved.kind === 'absent') {
          await fs.rm(file, { force: true })
        } else if (saved.kind === 'symlink') {
          await replaceAtomically(file, async tmp => { await fs.symlink(saved.target, tmp) })
        } else {
          await writeRegularFile(file, Buffer.from(saved.content, 'base64'), saved.mode, { uid: saved.uid, gid: saved.gid })
        }
      }
      // Otherwise the host rewrote the file since: its version wins, the backup is stale.
      await fs.rm(backupPath, { force: true })
    }
  }
}
