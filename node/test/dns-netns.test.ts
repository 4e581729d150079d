import t from 'tap'
import fs from 'node:fs/promises'
import { spawn, execFile, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { MAGIC_DNS_IPV4, MAGIC_DNS_IPV6 } from '@warren/protocol'
import { createHostResolverConfigurator } from '../src/dns/resolver-config.js'
import { testNetmap } from '../src/testing.js'

/**
 * The real path of a lookup: in a fresh network namespace, glibc and dig read the
 * namespace's resolv.conf (which `ip netns exec` mounts over /etc/resolv.conf), written by
 * the resolver configurator, and ask MagicDNS on 100.100.100.100 and its IPv6 twin; names
 * outside the mesh go to the namespace's original resolver on 127.0.0.1.
 */

const exec = promisify(execFile)
const skip = process.getuid?.() !== 0
  ? 'needs root for network namespaces'
  : await exec('dig', ['-v']).then(() => false, () => 'dig is not installed')

/** CHILD runs inside the namespace: MagicDNS plus a stand-in for the original resolver. */
const CHILD = `
const cfg = JSON.parse(process.env.WARREN_DNS_CHILD)
const dns = await import(cfg.module)
const upstreamRecords = dns.createMeshRecordStore()
upstreamRecords.update(cfg.upstreamNetmap)
await dns.createMagicDnsServer({ listen: [{ address: '127.0.0.1', port: 53 }], records: upstreamRecords }).start()
const records = dns.createMeshRecordStore()
records.update(cfg.netmap)
await dns.createMagicDnsServer({ listen: cfg.listen, upstreams: cfg.upstreams, records }).start()
process.stdout.write('ready\\n')
`

t.test('in a network namespace, glibc and dig resolve mesh names through the managed resolv.conf', { skip }, async t => {
  const ns = `wd${process.pid}${randomBytes(2).toString('hex')}`.slice(0, 15)
  const nsDir = `/etc/netns/${ns}`
  const resolvConf = `${nsDir}/resolv.conf`
  const original = '# the namespace resolver\nnameserver 127.0.0.1\n'
  let child: ChildProcess | undefined
  t.teardown(async () => {
    child?.kill('SIGKILL')
    await exec('ip', ['netns', 'del', ns]).catch(() => {})
    await fs.rm(nsDir, { recursive: true, force: true })
    await fs.rm(`${nsDir}.resolv.conf.warren-backup`, { force: true })
  })
  await exec('ip', ['netns', 'add', ns])
  await exec('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
  await exec('ip', ['-n', ns, 'addr', 'add', `${MAGIC_DNS_IPV4}/32`, 'dev', 'lo'])
  await exec('ip', ['-n', ns, 'addr', 'add', `${MAGIC_DNS_IPV6}/128`, 'dev', 'lo', 'nodad'])
  await fs.mkdir(nsDir, { recursive: true })
  await fs.writeFile(resolvConf, original)

  const host = createHostResolverConfigurator({ interfaceName: 'lo', resolvConfPath: resolvConf })
  const { mode, upstreams } = await host.apply('warren.internal')
  t.same({ mode, upstreams }, { mode: 'file', upstreams: ['127.0.0.1'] })

  const netmap = testNetmap({ name: 'laptop', ipv4: '100.64.0.1', ipv6: 'fd7a:115c:a1e0:ab12::1' }, [{ name: 'db', ipv4: '100.64.0.2', ipv6: 'fd7a:115c:a1e0:ab12::2' }])
  const upstreamNetmap = testNetmap({ name: 'example', ipv4: '192.0.2.1', ipv6: '2001:db8::1' }, [], 'upstream.test')
  const cfg = {
    module: new URL('../src/dns/index.js', import.meta.url).href,
    netmap,
    upstreamNetmap,
    listen: [{ address: MAGIC_DNS_IPV4, port: 53 }, { address: MAGIC_DNS_IPV6, port: 53 }],
    upstreams
  }
  child = spawn('ip', ['netns', 'exec', ns, process.execPath, '--input-type=module', '-e', CHILD], {
    cwd: fileURLToPath(new URL('../../..', import.meta.url)),
    env: { ...process.env, WARREN_DNS_CHILD: JSON.stringify(cfg) },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let stderr = ''
  child.stderr!.on('data', d => { stderr += String(d) })
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`MagicDNS did not start in the namespace: ${stderr}`)), 10_000)
    child!.stdout!.on('data', d => { if (String(d).includes('ready')) { clearTimeout(timer); resolve() } })
    child!.on('exit', code => { clearTimeout(timer); reject(new Error(`child exited ${code}: ${stderr}`)) })
  })

  const inNs = async (...argv: string[]): Promise<string> => (await exec('ip', ['netns', 'exec', ns, ...argv])).stdout
  t.match(await inNs('cat', '/etc/resolv.conf'), /^nameserver 100\.100\.100\.100$/m, 'the namespace sees the managed file')
  t.match(await inNs('getent', 'ahostsv4', 'db'), /^100\.64\.0\.2\s/m, 'glibc: a short name through the search domain')
  t.equal((await inNs('dig', '+short', '+time=2', 'DB.warren.internal')).trim(), '100.64.0.2')
  t.equal((await inNs('dig', '+short', '+time=2', '+tcp', 'laptop.warren.internal', 'AAAA')).trim(), 'fd7a:115c:a1e0:ab12::1')
  t.equal((await inNs('dig', '+short', '+time=2', `@${MAGIC_DNS_IPV6}`, 'db.warren.internal')).trim(), '100.64.0.2', 'the IPv6 listener answers')
  t.equal((await inNs('dig', '+short', '+time=2', '-x', '100.64.0.2')).trim(), 'db.warren.internal.')
  t.match(await inNs('dig', '+time=2', 'ghost.warren.internal'), /status: NXDOMAIN/)
  t.equal((await inNs('dig', '+short', '+time=2', 'example.upstream.test')).trim(), '192.0.2.1', 'other names reach the original resolver')

  await host.restore()
  t.equal(await fs.readFile(resolvConf, 'utf8'), original, 'restored exactly')
  t.equal(await inNs('cat', '/etc/resolv.conf'), original)
})
