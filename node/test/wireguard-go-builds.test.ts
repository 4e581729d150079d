import t from 'tap'
import { realpathSync } from 'node:fs'
import { createWireGuard, installedCandidates, wireGuardGoCandidates, parseWireGuardGoVersion, compareVersions, rankWireGuardGoBuilds } from '../src/wireguard/index.js'
import { simulateWireGuardSystem, SIM_CANDIDATES } from './wireguard-simulated-system.js'

const IF = 'wgtest0'
const OLD = 'wireguard-go v0.0.20220316\n\nUserspace WireGuard daemon for linux-amd64.\n'
const NEW = 'wireguard-go v0.0.20230223\n\nUserspace WireGuard daemon for linux-amd64.\n'
const CANDIDATES = [...SIM_CANDIDATES, '/usr/sbin/wireguard-go']
const versionRuns = (calls: Array<{ argv: string[] }>) => calls.filter(c => c.argv[1] === '--version').map(c => c.argv[0])
const started = (calls: Array<{ argv: string[] }>) => calls.filter(c => /wireguard-go$/.test(c.argv[0]!) && c.argv[1] === IF).map(c => c.argv[0])

t.test('kernel WireGuard present: auto uses it and never looks for wireguard-go', async t => {
  const sim = simulateWireGuardSystem({ kernel: true, builds: { '/usr/bin/wireguard-go': NEW } })
  const wg = createWireGuard({ runner: sim.runner, interfaceName: IF, wireguardGoCandidates: CANDIDATES })
  t.equal(wg.implementation(), undefined, 'nothing is known before up')
  t.equal(await wg.up(), 'kernel')
  t.same(wg.implementation(), { implementation: 'kernel' })
  t.same(versionRuns(sim.runner.calls), [])
  await wg.close()
  t.equal(wg.implementation(), undefined, 'nothing runs after close')
})

t.test('kernel WireGuard absent: auto starts wireguard-go and reports its version and path', async t => {
  const sim = simulateWireGuardSystem({ builds: { '/usr/bin/wireguard-go': NEW } })
  const wg = createWireGuard({ runner: sim.runner, interfaceName: IF, wireguardGoCandidates: CANDIDATES })
  t.equal(await wg.up(), 'userspace')
  t.same(wg.implementation(), { implementation: 'wireguard-go', path: '/usr/bin/wireguard-go', version: '0.0.20230223' })
  t.same(started(sim.runner.calls), ['/usr/bin/wireguard-go'])
})

t.test('userspace mode uses wireguard-go even where the kernel could', async t => {
  const sim = simulateWireGuardSystem({ kernel: true, builds: { '/usr/bin/wireguard-go': NEW } })
  const wg = createWireGuard({ runner: sim.runner, interfaceName: IF, mode: 'userspace', wireguardGoCandidates: CANDIDATES })
  t.equal(await wg.up(), 'userspace')
  t.equal(wg.implementation()?.implementation, 'wireguard-go')
  t.same(sim.runner.matching(/^ip link add/), [])
})

t.test('two wireguard-go builds: the newer one runs, wherever it is in the search order', async t => {
  const sim = simulateWireGuardSystem({ builds: { '/usr/local/bin/wireguard-go': OLD, '/usr/bin/wireguard-go': NEW } })
  const wg = createWireGuard({ runner: sim.runner, interfaceName: IF, wireguardGoCandidates: CANDIDATES })
  await wg.up()
  t.same(versionRuns(sim.runner.calls), CANDIDATES, 'every candidate is asked')
  t.same(started(sim.runner.calls), ['/usr/bin/wireguard-go'])
  t.equal(wg.implementation()?.version, '0.0.20230223')

  const swapped = simulateWireGuardSystem({ builds: { '/usr/local/bin/wireguard-go': NEW, '/usr/bin/wireguard-go': OLD } })
  await createWireGuard({ runner: swapped.runner, interfaceName: IF, wireguardGoCandidates: CANDIDATES }).up()
  t.same(started(swapped.runner.calls), ['/usr/local/bin/wireguard-go'])
})

t.test('the same --version: the newer package wins (upstream 0.0.20231211 prints 0.0.20230223)', async t => {
  const sim = simulateWireGuardSystem({ builds: { '/usr/local/bin/wireguard-go': NEW, '/usr/bin/wireguard-go': NEW } })
  sim.runner.on('dpkg-query -L wireguard-go', { stdout: '/.\n/usr\n/usr/bin\n/usr/bin/wireguard-go\n/usr/share/doc/wireguard-go\n' })
  sim.runner.on('dpkg-query -W -f=${db:Status-Status} ${Version} wireguard-go', { stdout: 'installed 0.0.20231211-1~bpo12+1' })
  const wg = createWireGuard({ runner: sim.runner, interfaceName: IF, wireguardGoCandidates: CANDIDATES })
  await wg.up()
  t.same(wg.implementation(), { implementation: 'wireguard-go', path: '/usr/bin/wireguard-go', version: '0.0.20230223', package: 'wireguard-go 0.0.20231211-1~bpo12+1' })
  t.same(rankWireGuardGoBuilds([
    { path: '/a', version: '0.0.20230223', package: 'wireguard-go 0.0.20230223-1' },
    { path: '/b', version: '0.0.20230223', package: 'wireguard-go 0.0.20231211-1~bpo12+1' },
    { path: '/c' }
  ]).map(b => b.path), ['/b', '/a', '/c'])
})

t.test('an explicit --wireguard-go is used as given, even when an installed one is newer', async t => {
  const sim = simulateWireGuardSystem({ builds: { '/opt/wg/wireguard-go': OLD, '/usr/bin/wireguard-go': NEW } })
  const wg = createWireGuard({ runner: sim.runner, interfaceName: IF, wireguardGo: '/opt/wg/wireguard-go', wireguardGoCandidates: CANDIDATES })
  await wg.up()
  t.same(started(sim.runner.calls), ['/opt/wg/wireguard-go'])
  t.equal(wg.implementation()?.version, '0.0.20220316')

  const missing = await createWireGuard({ runner: simulateWireGuardSystem().runner, interfaceName: IF, wireguardGo: '/opt/nope/wireguard-go' }).up().catch(e => e)
  t.equal(missing.code, 'wireguard_unavailable')
  t.match(missing.message, /looked for \/opt\/nope\/wireguard-go.*point --wireguard-go at a working program \(\/opt\/nope\/wireguard-go: .*command not found/)
})

t.test('no kernel WireGuard and no wireguard-go: the error names the packages to install', async t => {
  const sim = simulateWireGuardSystem({ wireguardGo: false })
  const err = await createWireGuard({ runner: sim.runner, interfaceName: IF, wireguardGoCandidates: CANDIDATES }).up().catch(e => e)
  t.equal(err.code, 'wireguard_unavailable')
  t.match(err.message, /no wireguard-go runs \(looked for PATH and \/usr\/bin, \/usr\/local\/bin, \/usr\/sbin\)/)
  t.match(err.message, /install the wireguard-go package \(on Debian bookworm from bookworm-backports: apt-get install -t bookworm-backports wireguard-go/)
  t.match(err.message, /wireguard-tools/)
  t.match(err.message, /wireguard kernel module/)
  t.same(sim.devices.size, 0, 'no interface was made')
})

t.test('an adopted wireguard-go interface is reported as the program that runs it', async t => {
  const sim = simulateWireGuardSystem({ builds: { '/usr/local/bin/wireguard-go': OLD, '/usr/bin/wireguard-go': NEW } })
  await createWireGuard({ runner: sim.runner, interfaceName: IF, wireguardGo: '/usr/local/bin/wireguard-go' }).up()
  sim.runner.reset()
  const restarted = createWireGuard({ runner: sim.runner, interfaceName: IF, wireguardGoCandidates: CANDIDATES })
  await restarted.up()
  t.same(restarted.implementation(), { implementation: 'wireguard-go', path: '/usr/local/bin/wireguard-go', version: '0.0.20220316' }, 'the old build that runs it, not the newest installed')
  t.same(started(sim.runner.calls), [], 'nothing new is started')

  // upgraded since it started: the file is another build now, the process is not
  sim.runner.on(/^readlink \/proc\/\d+\/exe$/, { stdout: '/usr/local/bin/wireguard-go (deleted)\n' })
  const again = createWireGuard({ runner: sim.runner, interfaceName: IF })
  await again.up()
  t.same(again.implementation(), { implementation: 'wireguard-go', path: '/usr/local/bin/wireguard-go', replaced: true })

  // no process found (pgrep missing, or another PID namespace): only the kind is known
  sim.runner.on('pgrep -a -x wireguard-go', { exitCode: 127, stderr: 'pgrep: command not found' })
  const unknown = createWireGuard({ runner: sim.runner, interfaceName: IF })
  await unknown.up()
  t.same(unknown.implementation(), { implementation: 'wireguard-go' })
})

t.test('candidates come from PATH, then the usual directories, each once; relative PATH entries are skipped', async t => {
  t.same(wireGuardGoCandidates('/usr/local/sbin:/usr/local/bin:/usr/bin:.:bin:/usr/bin/'), [
    '/usr/local/sbin/wireguard-go', '/usr/local/bin/wireguard-go', '/usr/bin/wireguard-go', '/usr/sbin/wireguard-go'
  ])
  t.same(wireGuardGoCandidates(undefined), ['/usr/bin/wireguard-go', '/usr/local/bin/wireguard-go', '/usr/sbin/wireguard-go'])
  t.same(wireGuardGoCandidates('/usr/bin', '/opt/wireguard-go'), ['/opt/wireguard-go'])
})

t.test('only candidates that exist are tried, each file once', async t => {
  t.same(installedCandidates(['/nonexistent/wireguard-go', process.execPath, process.execPath]), [realpathSync(process.execPath)])
  t.same(installedCandidates([]), [])
})

t.test('versions are read from --version and compared by number', async t => {
  t.equal(parseWireGuardGoVersion(NEW), '0.0.20230223')
  t.equal(parseWireGuardGoVersion('wireguard-go 0.0.20250522\n'), '0.0.20250522')
  t.equal(parseWireGuardGoVersion('usage: wireguard-go [-f/--foreground] INTERFACE-NAME\n'), undefined)
  t.equal(compareVersions('0.0.20220316', '0.0.20230223'), -1)
  t.equal(compareVersions('0.1', '0.0.20230223'), 1)
  t.equal(compareVersions('1.0', '1.0.0'), 0)
  t.equal(compareVersions(undefined, '0.0.1'), -1)
})
