import t, { type Test } from 'tap'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { createFakeCommandRunner } from '../src/testing.js'
import { MANAGED_MARKER, createHostResolverConfigurator, defaultBackupPath, parseResolvConf, upstreamsOf, type HostResolverOptions } from '../src/dns/resolver-config.js'

// Odd on purpose: comments, a tab, CRLF, no final newline, our own address, a scoped IPv6.
const ORIGINAL = '# written by dhcp\r\nnameserver 192.0.2.1\nnameserver\t2001:db8::1\nnameserver 100.100.100.100\nsearch lan corp.example\noptions edns0 trust-ad\n; end'

/** tempResolvConf makes a temp dir holding resolv.conf with `content` (none if undefined). */
async function tempResolvConf (t: Test, content?: string): Promise<{ dir: string, file: string }> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'warren-dns-'))
  t.teardown(async () => await fs.rm(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'resolv.conf')
  if (content !== undefined) await fs.writeFile(file, content)
  return { dir, file }
}

function configurator (dir: string, extra: Partial<HostResolverOptions> = {}): ReturnType<typeof createHostResolverConfigurator> {
  return createHostResolverConfigurator({ interfaceName: 'wtest0', resolvConfPath: path.join(dir, 'resolv.conf'), ...extra })
}

t.test('file mode: managed resolv.conf, upstreams from the original, restore byte for byte', async t => {
  const { dir, file } = await tempResolvConf(t, ORIGINAL)
  await fs.chmod(file, 0o640)
  const root = process.getuid?.() === 0
  if (root) await fs.chown(file, 1234, 1235)
  const inode = (await fs.stat(file)).ino
  const host = configurator(dir)

  const r = await host.apply('warren.internal')
  t.same(r, { mode: 'file', upstreams: ['192.0.2.1', '2001:db8::1'] }, 'MagicDNS itself is not an upstream')
  const managed = await fs.readFile(file, 'utf8')
  t.ok(managed.startsWith(MANAGED_MARKER), 'the header says Warren manages it')
  t.match(managed, /^nameserver 100\.100\.100\.100$/m)
  t.match(managed, /^search warren\.internal lan corp\.example$/m, 'the mesh domain first, the original search list kept')
  t.match(managed, /^options edns0 trust-ad$/m)
  t.equal(parseResolvConf(managed).nameservers.length, 1, 'only MagicDNS')
  t.equal((await fs.stat(file)).ino, inode, 'written in place, so a bind mount of the file sees it')

  const again = await host.apply('warren.internal')
  t.same(again.upstreams, r.upstreams, 'apply twice: the original is still known')

  await host.restore()
  t.equal(await fs.readFile(file, 'utf8'), ORIGINAL, 'exact bytes')
  t.equal((await fs.stat(file)).mode & 0o7777, 0o640, 'mode kept')
  if (root) t.same([(await fs.stat(file)).uid, (await fs.stat(file)).gid], [1234, 1235], 'owner kept')
  await t.rejects(fs.access(file + '.warren-backup'), 'the backup is gone after restore')
  await host.restore()
  t.equal(await fs.readFile(file, 'utf8'), ORIGINAL, 'restore twice changes nothing')
})

t.test('a symlinked resolv.conf stays a symlink and its target is never written', async t => {
  const { dir, file } = await tempResolvConf(t)
  await fs.writeFile(path.join(dir, 'stub-resolv.conf'), 'nameserver 192.0.2.7\n')
  await fs.symlink('stub-resolv.conf', file)
  const host = configurator(dir)

  t.same((await host.apply('warren.internal')).upstreams, ['192.0.2.7'])
  t.notOk((await fs.lstat(file)).isSymbolicLink(), 'replaced by our own file while managed')
  t.equal(await fs.readFile(path.join(dir, 'stub-resolv.conf'), 'utf8'), 'nameserver 192.0.2.7\n', 'the target is untouched')

  await host.restore()
  t.ok((await fs.lstat(file)).isSymbolicLink())
  t.equal(await fs.readlink(file), 'stub-resolv.conf', 'the same relative target')
})

t.test('after a crash the backup is kept: a restarted daemon never backs up its own file', async t => {
  const { dir, file } = await tempResolvConf(t, ORIGINAL)
  await configurator(dir).apply('warren.internal')
  const backup = await fs.readFile(file + '.warren-backup')
  // The daemon dies here without restore; a new one starts.
  const restarted = configurator(dir)
  const r = await restarted.apply('warren.internal')
  t.same(r.upstreams, ['192.0.2.1', '2001:db8::1'], 'upstreams still from the original')
  t.same(await fs.readFile(file + '.warren-backup'), backup, 'backup unchanged')
  await restarted.restore()
  t.equal(await fs.readFile(file, 'utf8'), ORIGINAL)
})

t.test('if the host rewrote resolv.conf while we were down, its new version is the original', async t => {
  const { dir, file } = await tempResolvConf(t, ORIGINAL)
  await configurator(dir).apply('warren.internal')
  await fs.writeFile(file, 'nameserver 198.51.100.1\n') // DHCP renewed while the daemon was dead
  const host = configurator(dir)
  t.same((await host.apply('warren.internal')).upstreams, ['198.51.100.1'])
  await host.restore()
  t.equal(await fs.readFile(file, 'utf8'), 'nameserver 198.51.100.1\n')
})

t.test('no original file: we create one, restore removes it; no upstreams means none', async t => {
  const { dir, file } = await tempResolvConf(t)
  const host = configurator(dir)
  t.same(await host.apply('warren.internal'), { mode: 'file', upstreams: [] })
  t.match(await fs.readFile(file, 'utf8'), /nameserver 100\.100\.100\.100/)
  await host.restore()
  await t.rejects(fs.access(file))

  await fs.writeFile(file, 'nameserver 100.100.100.100\nnameserver fd7a:115c:a1e0::53\n')
  t.same((await host.apply('warren.internal')).upstreams, [], 'only MagicDNS itself: no loop, no upstream')
  await host.restore()
})

t.test('the backup path is configurable (as in network namespaces)', async t => {
  const { dir, file } = await tempResolvConf(t, ORIGINAL)
  const backupPath = path.join(dir, 'state', 'resolv.backup')
  await fs.mkdir(path.dirname(backupPath))
  const host = configurator(dir, { backupPath })
  await host.apply('warren.internal')
  await fs.access(backupPath)
  t.match(await fs.readFile(file, 'utf8'), backupPath, 'the header says where the original is')
  await host.restore()
  t.equal(await fs.readFile(file, 'utf8'), ORIGINAL)
})

t.test('bad input: clear errors, nothing changed', async t => {
  const { dir, file } = await tempResolvConf(t, ORIGINAL)
  const host = configurator(dir)
  await t.rejects(host.apply('not a domain'), { code: 'bad_domain' })
  t.equal(await fs.readFile(file, 'utf8'), ORIGINAL)

  await fs.writeFile(file + '.warren-backup', 'garbage')
  await fs.writeFile(file, MANAGED_MARKER + '\nnameserver 100.100.100.100\n')
  await t.rejects(host.apply('warren.internal'), { code: 'resolv_conf_backup_corrupt' })
  await fs.rm(file + '.warren-backup')
  await t.rejects(host.apply('warren.internal'), { code: 'resolv_conf_backup_missing', message: /original is lost/ })
})

t.test('systemd-resolved: per-link DNS and routing domain, resolv.conf untouched', async t => {
  const stub = 'nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n'
  const { dir, file } = await tempResolvConf(t, stub)
  const runner = createFakeCommandRunner()
  const host = configurator(dir, { runner })
  const r = await host.apply('Warren.Internal.')
  t.same(r, { mode: 'resolved', upstreams: ['127.0.0.53'] })
  t.same(runner.calls.map(c => c.argv.join(' ')), [
    'resolvectl status --no-pager',
    'resolvectl dns wtest0 100.100.100.100',
    'resolvectl domain wtest0 ~warren.internal',
    'resolvectl default-route wtest0 false'
  ])
  t.equal(await fs.readFile(file, 'utf8'), stub)
  await t.rejects(fs.access(file + '.warren-backup'), 'no backup in this mode')
  runner.reset()
  await host.restore()
  t.same(runner.calls.map(c => c.argv.join(' ')), ['resolvectl revert wtest0'])
})

t.test('the systemd-resolved stub without a working resolvectl falls back to the file', async t => {
  const { dir, file } = await tempResolvConf(t, 'nameserver 127.0.0.53\n')
  const runner = createFakeCommandRunner().on(/^resolvectl/, { exitCode: 127, stderr: 'resolvectl: command not found' })
  const host = configurator(dir, { runner })
  t.equal((await host.apply('warren.internal')).mode, 'file')
  await host.restore()
  t.equal(await fs.readFile(file, 'utf8'), 'nameserver 127.0.0.53\n')
})

t.test('upstreamsOf ignores comments, junk and MagicDNS itself', async t => {
  t.same(upstreamsOf('nameserver 10.0.0.1 # lan\nnameserver nonsense\n#nameserver 10.0.0.2\nnameserver 100.100.100.100\nnameserver fe80::1%eth0\n'), ['10.0.0.1', 'fe80::1%eth0'])
})

t.test('the default backup sits beside resolv.conf, but outside /etc/netns/<ns>/ (ip netns exec mounts all in it)', async t => {
  t.equal(defaultBackupPath('/etc/resolv.conf'), '/etc/resolv.conf.warren-backup')
  t.equal(defaultBackupPath('/etc/netns/w1/resolv.conf'), '/etc/netns/w1.resolv.conf.warren-backup')
})
