import t from 'tap'
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { createTopology, netnsSkipReason, waitFor, spawnProcess, execCommand } from '../src/index.js'

const skip = netnsSkipReason()

async function namespaces (): Promise<string[]> {
  return (await execCommand(['ip', 'netns', 'list'])).stdout.split('\n').map(l => l.split(' ')[0]!).filter(Boolean)
}

t.test('hosts on the backbone reach each other, and teardown removes every namespace and process', { skip }, async t => {
  let names: string[] = []
  let pid = 0
  await t.test('build and use', async t => {
    const topo = await createTopology(t, { hosts: 3 })
    names = [topo.hub, ...topo.hosts.map(h => h.netns)]
    t.same(topo.hosts.map(h => h.name), ['a', 'b', 'c'])
    t.ok(names.every(n => n.startsWith('w')), 'namespace names start with w')
    t.equal(new Set(topo.hosts.map(h => h.interfaceName())).size, 3, 'interface names are unique per host')
    t.ok(topo.hosts.every(h => h.interfaceName('-x').length <= 15))
    const [a, b, c] = topo.hosts as [typeof topo.hosts[0], typeof topo.hosts[0], typeof topo.hosts[0]]
    t.match(a.address, /^10\.\d+\.\d+\.1$/)
    await a.exec(['ping', '-c', '1', '-W', '2', b.address])
    await c.exec(['ping', '-c', '1', '-W', '2', a.address])
    const links = JSON.parse((await a.exec(['ip', '-j', 'link', 'show'])).stdout) as Array<{ ifname: string, operstate: string }>
    t.same(links.map(l => l.ifname).sort(), ['eth0', 'lo'], 'a host sees only loopback and its own interface')
    // A long-running process inside a host, found by its output.
    const server = b.spawn(['sh', '-c', 'echo listening; exec sleep 300'])
    await server.waitForLine(/listening/, 60_000)
    pid = server.pid
    // A process the harness did not start itself must go too.
    await c.exec(['sh', '-c', 'sleep 300 >/dev/null 2>&1 &'])
  })
  // The subtest's teardown has run here.
  const left = await namespaces()
  t.same(names.filter(n => left.includes(n)), [], 'no namespace is left')
  t.throws(() => process.kill(pid, 0), 'the spawned process is gone')
})

t.test('a host can sit on two networks, as a NAT router will', { skip }, async t => {
  const topo = await createTopology(t, { hosts: ['left', 'router'] })
  const lan = await topo.addNetwork('lan')
  const router = topo.host('router')
  const r2 = await topo.addHost('inside', { networks: ['lan'] })
  const routerOnLan = await topo.addHost('router2', { networks: [topo.networks[0]!.name, lan.name] })
  t.equal(routerOnLan.interfaces.length, 2)
  t.not(routerOnLan.interfaces[0]!.cidr.split('.').slice(0, 3).join('.'), routerOnLan.interfaces[1]!.cidr.split('.').slice(0, 3).join('.'), 'each network has its own subnet')
  await r2.exec(['ping', '-c', '1', '-W', '2', routerOnLan.interfaces[1]!.address])
  const cross = await r2.exec(['ping', '-c', '1', '-W', '1', router.address], { allowFail: true })
  t.not(cross.exitCode, 0, 'a LAN host does not reach the backbone without a router')
  t.throws(() => topo.host('nobody'), /has no host 'nobody'/)
})

t.test('waitFor polls until a condition holds, and times out with what it saw', async t => {
  let n = 0
  t.equal(await waitFor(() => ++n >= 3 && n, { intervalMs: 5 }), 3)
  await t.rejects(waitFor(() => false, { timeoutMs: 50, intervalMs: 10, message: 'the impossible' }), /timed out after 50 ms waiting for the impossible/)
})

t.test('waitForLine fails clearly when the process exits first', async t => {
  const p = spawnProcess(['sh', '-c', 'echo starting; exit 3'])
  await t.rejects(p.waitForLine(/ready/, 60_000), /exited \(code 3.*starting/s)
  t.same(await p.exited, { code: 3, signal: null })
})

t.test('without root, namespace tests skip with a clear reason', { skip: process.getuid?.() !== 0 ? 'already not root' : false }, async t => {
  const index = fileURLToPath(new URL('../src/index.js', import.meta.url))
  const code = `import(${JSON.stringify(index)}).then(m => console.log(m.netnsSkipReason()))`
  const out = await new Promise<string>((resolve, reject) => {
    execFile(process.execPath, ['-e', code], { uid: 65534, gid: 65534, cwd: '/' }, (err, stdout, stderr) => err !== null ? reject(new Error(stderr)) : resolve(stdout))
  })
  t.match(out, /network namespace tests need root \(CI runs them as root\): run the tests with sudo/)
})
