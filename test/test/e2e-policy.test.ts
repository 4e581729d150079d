import t from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createAdminClient, createPolicyAdmin } from '@warren/sdk'
import { netnsSkipReason, waitFor, type ProcessHandle } from '../src/index.js'
import { createMesh, canConnect, canPing, dial, flowSamples, FLOW_ARGV, type MeshNode } from '../src/mesh.js'

/**
 * The access policy end to end, with real processes in network namespaces: a controller
 * and three daemons (tag:web, tag:db, and alice's laptop). The policy decides which
 * ports connect, whether ping answers, which peers a node has in WireGuard and MagicDNS,
 * and a revocation stops an established stream.
 */
const skip = netnsSkipReason()

/**
 * rules builds a policy: alice's laptop reaches web:80 (TCP only), web reaches db:5432, db
 * reaches web:7000; `extra` rules may name posture:managed (a Linux device an admin marked managed).
 */
function policy (extra: string[] = [], webToDb = true): string {
  return `{
  // laptop -> web over TCP only (so no ping); web <-> db; laptop never sees db
  "groups": { "group:eng": ["alice@"] },
  "postures": { "posture:managed": ["node:os == 'linux'", "custom:managed == true"] },
  "tagOwners": { "tag:web": ["alice@"], "tag:db": ["alice@"] },
  "acls": [
    { "action": "accept", "src": ["group:eng"], "dst": ["tag:web:80"], "proto": "tcp" },
${webToDb ? '    { "action": "accept", "src": ["tag:web"], "dst": ["tag:db:5432"] },\n' : ''}    { "action": "accept", "src": ["tag:db"], "dst": ["tag:web:7000"] },
${extra.map(r => `    ${r},\n`).join('')}  ],
  "tests": [
    { "src": "alice@", "accept": ["tag:web:80"], "deny": ["tag:web:22"] },
  ],
}
`
}

t.test('the access policy is enforced on real nodes', { skip, timeout: 580_000 }, async t => {
  const mesh = await createMesh(t, { hosts: ['web', 'db', 'laptop'] })
  const write = (name: string, text: string): string => {
    const p = join(mesh.dir, name)
    writeFileSync(p, text)
    return p
  }
  await mesh.admin('users', 'create', 'alice', '--email', 'alice@example.com')
  await mesh.admin('policy', 'set', write('base.hujson', policy()), '-m', 'base')
  const key = async (...extra: string[]): Promise<string> =>
    JSON.parse(await mesh.admin('keys', 'create', '--user', 'alice', '--reusable', '--preapproved', ...extra, '--json')).key as string
  const web = await mesh.join('web', { authKey: await key('--tags', 'tag:web') })
  const db = await mesh.join('db', { authKey: await key('--tags', 'tag:db') })
  const laptop = await mesh.join('laptop', { authKey: await key() })

  // Every node serves the ports the tests use, so a failed connection is the filter's doing.
  const servers = new Map<string, ProcessHandle>()
  for (const n of [web, db, laptop]) {
    const p = n.host.spawn([...FLOW_ARGV, 'serve', '22,80,5432,7000,8080'])
    await p.waitForLine(/^listening$/, 60_000)
    servers.set(n.name, p)
  }
  // Policy changes timed below go through the admin socket in process, so that no CLI start-up is counted.
  const adminClient = createAdminClient({ stateDir: mesh.controllerStateDir })
  t.teardown(() => { adminClient.close() })
  const policyAdmin = createPolicyAdmin(adminClient)
  // The receiving node rejects a denied SYN at once, but a node that is no peer never
  // answers: probes are short where the answer should be "denied", long where it should
  // connect (a loaded machine only waits longer).
  const reach = async (from: MeshNode, to: MeshNode, port: number, timeoutMs = 500): Promise<boolean> => await canConnect(from.host, to.ipv4, port, timeoutMs)
  const connects = async (from: MeshNode, to: MeshNode, port: number): Promise<boolean> => await reach(from, to, port, 10_000)

  await t.test('an allowed TCP port connects and a denied one does not', async t => {
    await waitFor(async () => await reach(laptop, web, 80), { timeoutMs: 120_000, message: 'laptop -> web:80 (allowed)' })
    t.ok(await connects(laptop, web, 80), 'laptop -> web:80 is allowed')
    t.notOk(await reach(laptop, web, 22), 'laptop -> web:22 is denied')
    t.notOk(await reach(laptop, web, 7000), 'laptop -> web:7000 is denied (only db may)')
    await waitFor(async () => await reach(web, db, 5432), { timeoutMs: 120_000, message: 'web -> db:5432 (allowed)' })
    t.notOk(await reach(web, db, 80), 'web -> db:80 is denied')
    t.notOk(await reach(db, web, 80), 'db -> web:80 is denied')
    t.ok(await connects(db, web, 7000), 'db -> web:7000 is allowed')
    t.notOk(await reach(web, laptop, 80), 'web -> laptop:80 is denied: access is one way')
    t.notOk(await canConnect(laptop.host, web.ipv6.replace(/\/.*$/, ''), 22), 'over IPv6 too: laptop -> web:22 is denied')
    t.ok(await canConnect(laptop.host, web.ipv6.replace(/\/.*$/, ''), 80, 10_000), 'laptop -> web:80 over IPv6 is allowed')
  })

  await t.test('a denied dial fails at once as prohibited; an allowed port without a listener is refused', async t => {
    const denied = await dial(laptop.host, web.ipv4, 22)
    t.equal(denied.result, 'EHOSTUNREACH', 'laptop -> web:22: the connect fails with EHOSTUNREACH (ICMP administratively prohibited)')
    t.ok(denied.ms < 1000, `within 1 s (${denied.ms} ms), not after a TCP timeout`)
    const denied6 = await dial(laptop.host, web.ipv6.replace(/\/.*$/, ''), 22)
    t.equal(denied6.result, 'EACCES', 'over IPv6 with EACCES (ICMPv6 administratively prohibited)')
    t.ok(denied6.ms < 1000, `within 1 s (${denied6.ms} ms)`)
    t.equal((await dial(laptop.host, web.ipv4, 80)).result, 'open', 'laptop -> web:80 (allowed) connects')
    // a port the policy allows where nothing listens: the node's own stack refuses it
    await policyAdmin.set(policy(['{ "action": "accept", "src": ["group:eng"], "dst": ["tag:web:9"], "proto": "tcp" }']), 'allow web:9')
    const refused = await waitFor(async () => { const d = await dial(laptop.host, web.ipv4, 9, 2000); return d.result === 'ECONNREFUSED' ? d : undefined }, { timeoutMs: 120_000, message: 'laptop -> web:9 to be allowed' })
    t.ok(refused.ms < 1000, `laptop -> web:9 (allowed, no listener) fails with ECONNREFUSED, within 1 s (${refused.ms} ms)`)
    await policyAdmin.set(policy(), 'close web:9 again')
    await waitFor(async () => (await dial(laptop.host, web.ipv4, 9, 2000)).result === 'EHOSTUNREACH', { timeoutMs: 120_000, message: 'laptop -> web:9 to be denied again' })
  })

  await t.test('ping follows the policy', async t => {
    t.ok(await canPing(web.host, db.ipv4, 10_000), 'web pings db: the web -> db rule has no proto, so ICMP is allowed')
    t.notOk(await canPing(laptop.host, web.ipv4), 'laptop does not ping web: its rule is TCP only')
    t.notOk(await canPing(laptop.host, db.ipv4), 'laptop does not ping db: nothing allows it')
  })

  await t.test('a node the policy keeps apart has no WireGuard peer and no MagicDNS answer for it', async t => {
    t.same((await laptop.wgPeers()).sort(), [web.wgKey], 'laptop has web only as a WireGuard peer')
    t.notOk((await db.wgPeers()).includes(laptop.wgKey), 'db has no peer entry for laptop')
    const dig = async (from: MeshNode, name: string): Promise<string> =>
      (await from.host.exec(['dig', '+time=2', '+tries=1', '@100.100.100.100', `${name}.warren.internal`, 'A'], { allowFail: true })).stdout
    t.match(await dig(laptop, 'db'), /status: NXDOMAIN/, 'db.warren.internal does not resolve on laptop')
    t.match(await dig(laptop, 'web'), new RegExp(`status: NOERROR[\\s\\S]*web\\.warren\\.internal\\.\\s+\\d+\\s+IN\\s+A\\s+${web.ipv4.replace(/\./g, '\\.')}`), 'web does')
    t.match(await dig(db, 'laptop'), /status: NXDOMAIN/, 'laptop.warren.internal does not resolve on db')
  })

  await t.test('a policy edit is enforced on all nodes', async t => {
    const opened = policy(['{ "action": "accept", "src": ["group:eng"], "dst": ["tag:web:8080", "tag:db:8080"] }'])
    // The time a verdict took: for "allowed", until a connection opened; for "denied",
    // until the start of the first probe that failed.
    const verdictMs = async (from: MeshNode, to: MeshNode, want: boolean, since: number): Promise<number> => {
      const deadline = since + 120_000
      while (Date.now() < deadline) {
        const probeStart = Date.now()
        // Short probes while waiting for a connection to open, so the figure is not a probe timeout.
        if (await reach(from, to, 8080, want ? 150 : 500) === want) return (want ? Date.now() : probeStart) - since
        await new Promise(resolve => setTimeout(resolve, 10))
      }
      throw new Error(`${from.name} -> ${to.name}:8080 still not ${want ? 'allowed' : 'denied'} 120 s after set`)
    }
    const expect = async (want: boolean): Promise<number[]> => {
      const since = Date.now()
      return await Promise.all([verdictMs(laptop, web, want, since), verdictMs(laptop, db, want, since)])
    }
    t.notOk(await reach(laptop, web, 8080), 'before: laptop -> web:8080 is denied')
    await policyAdmin.set(opened, 'open 8080')
    const [webOpen, dbOpen] = await expect(true)
    t.comment(`laptop reaches web:8080 ${webOpen} ms after set returned, db:8080 (a peer it did not have) ${dbOpen} ms after`)
    t.ok((await laptop.wgPeers()).includes(db.wgKey), 'db is now a WireGuard peer of laptop')

    await policyAdmin.set(policy(), 'close 8080 again')
    const [webClosed, dbClosed] = await expect(false)
    t.comment(`laptop -> web:8080 denied ${webClosed} ms after set returned, db:8080 ${dbClosed} ms after`)
    await waitFor(async () => !(await laptop.wgPeers()).includes(db.wgKey), { timeoutMs: 120_000, message: 'db gone from laptop\'s WireGuard peers' })
  })

  await t.test('a revocation cuts an established stream; a stream the other side opened keeps flowing', async t => {
    // web streams to db:5432 (web -> db is what gets revoked); db streams to web:7000 (stays allowed).
    const webToDb = web.host.spawn([...FLOW_ARGV, 'send', db.ipv4, '5432'])
    const dbToWeb = db.host.spawn([...FLOW_ARGV, 'send', web.ipv4, '7000'])
    t.teardown(async () => { await webToDb.kill(); await dbToWeb.kill() })
    await webToDb.waitForLine(/^connected$/, 60_000)
    await dbToWeb.waitForLine(/^connected$/, 60_000)
    const dbServer = servers.get('db')!
    const received = (): number => flowSamples(dbServer.output()).filter(s => s.port === 5432).at(-1)?.bytes ?? 0
    const echoed = (): number => flowSamples(dbToWeb.output()).at(-1)?.bytes ?? 0
    await waitFor(() => received() > 20_000 && echoed() > 20_000, { timeoutMs: 120_000, message: 'both streams carrying data' })

    const setStarted = Date.now()
    await policyAdmin.set(policy([], false), 'revoke web -> db')
    const revokedAt = Date.now()
    t.ok(flowSamples(dbServer.output()).some(s => s.port === 5432 && s.at >= setStarted - 100), 'web\'s stream was carrying data up to the revocation')
    const before = echoed()
    const lastRxAt = (): number => flowSamples(dbServer.output()).filter(s => s.port === 5432).at(-1)?.at ?? 0
    await waitFor(() => Date.now() - lastRxAt() > 1000, { timeoutMs: 120_000, intervalMs: 100, message: 'web\'s stream to db:5432 to stop' })
    const cutAt = lastRxAt()
    t.comment(`db's last data from web's stream arrived ${cutAt - revokedAt} ms after set returned`)
    await waitFor(() => echoed() > before + 50_000, { timeoutMs: 120_000, message: 'db\'s own stream to web:7000 to keep flowing' })
    t.pass(`db's own stream to web:7000 kept flowing (${echoed() - before} bytes echoed back since)`)
    t.equal(lastRxAt(), cutAt, 'web\'s stream to db carried nothing more')
    t.notOk(await reach(web, db, 5432), 'a new connection web -> db:5432 is denied')
    await policyAdmin.set(policy(), 'restore web -> db')
  })

  await t.test('a device posture: the daemon reports its attributes, and access follows the admin\'s custom ones', async t => {
    await policyAdmin.set(policy(['{ "action": "accept", "src": ["group:eng"], "dst": ["tag:web:8080"], "proto": "tcp", "srcPosture": ["posture:managed"] }']), 'web:8080 for managed devices')
    const reported = await waitFor(async () => { const a = (await adminClient.nodes.attrs('laptop')).attrs; return a['node:os'] !== undefined ? a : undefined }, { timeoutMs: 60_000, message: 'the laptop\'s reported attributes' })
    t.equal(reported['node:os'], 'linux', 'the daemon reported node:os')
    t.type(reported['node:tsVersion'], 'string', 'and its Warren version')
    t.notOk(await reach(laptop, web, 8080), 'not marked managed: laptop -> web:8080 is denied')
    await adminClient.nodes.setAttrs('laptop', { set: { 'custom:managed': true } })
    await waitFor(async () => await reach(laptop, web, 8080), { timeoutMs: 120_000, message: 'laptop -> web:8080 once managed' })
    t.ok(await connects(laptop, web, 8080), 'managed: laptop -> web:8080 connects')
    await adminClient.nodes.setAttrs('laptop', { unset: ['custom:managed'] })
    await waitFor(async () => !(await reach(laptop, web, 8080)), { timeoutMs: 120_000, message: 'laptop -> web:8080 denied again' })
    t.ok(await connects(laptop, web, 80), 'its other access is untouched')
    await policyAdmin.set(policy(), 'back to the base policy')
  })

  await t.test('a malformed policy is rejected with line:column and the old one stays enforced', async t => {
    const before = await policyAdmin.get()
    const bad = write('bad.hujson', policy(['{ "action": "accept", "src": ["group:engg"], "dst": ["tag:web:22"] }']))
    const r = await mesh.warren(['admin', '--state-dir', mesh.controllerStateDir, 'policy', 'set', bad], { allowFail: true })
    t.equal(r.exitCode, 1, 'set exits 1')
    t.match(r.stderr, new RegExp(`${bad}:10:35: group group:engg is not defined in "groups" \\(did you mean group:eng\\?\\)`), 'the error is at FILE:line:column with a suggestion')
    t.equal((await policyAdmin.get()).version, before.version, 'the policy version did not change')
    t.ok(await connects(laptop, web, 80), 'the allowed port still connects')
    t.notOk(await reach(laptop, web, 22), 'and the port the bad policy meant to open stays closed')
  })
})
