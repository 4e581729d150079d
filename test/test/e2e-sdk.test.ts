import t from 'tap'
import { writeFileSync, mkdirSync, rmSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import { connect } from '@warren/sdk'
import { netnsSkipReason, waitFor, hostNetworkState } from '../src/index.js'
import { createMesh, type MeshNode } from '../src/mesh.js'
import { SDK_TOOL_ARGV } from '../src/sdk-tool.js'

/**
 * The SDK end to end: apps on two real nodes in network namespaces dial each other by
 * name, learn who is calling, and get the mesh's error codes: a missing name, and a port
 * the policy forbids (the receiving node rejects it, so the dial fails at once instead of
 * waiting out a TCP timeout).
 */
const skip = netnsSkipReason()

const POLICY = `{
  "tagOwners": { "tag:api": ["alice@"] },
  "acls": [
    // alice's nodes reach the api's port 8080, nothing else
    { "action": "accept", "src": ["alice@"], "dst": ["tag:api:8080"] },
    // an app's own node (alice's) serves 7000-7001 to alice's nodes and to the api
    { "action": "accept", "src": ["alice@", "tag:api"], "dst": ["alice@:7000-7001"] },
  ],
}
`

interface ToolResult { ok?: boolean, answer?: string, code?: string, message?: string, status?: number, body?: string, ms?: number }

t.test('apps dial peers by name and know who calls', { skip, timeout: 580_000 }, async t => {
  const mesh = await createMesh(t, { hosts: ['api', 'laptop', 'app'] })
  await mesh.admin('users', 'create', 'alice', '--email', 'alice@example.com')
  const policyFile = join(mesh.dir, 'policy.hujson')
  writeFileSync(policyFile, POLICY)
  await mesh.admin('policy', 'set', policyFile)
  const key = async (...extra: string[]): Promise<string> =>
    JSON.parse(await mesh.admin('keys', 'create', '--user', 'alice', '--reusable', '--preapproved', ...extra, '--json')).key as string
  const api = await mesh.join('api', { authKey: await key('--tags', 'tag:api') })
  const laptop = await mesh.join('laptop', { authKey: await key() })

  // The api serves 8080 (allowed) and 9090 (forbidden) through the SDK, on its mesh addresses only.
  for (const port of [8080, 9090]) {
    const srv = api.host.spawn([...SDK_TOOL_ARGV, 'serve', api.socket, String(port)])
    await srv.waitForLine(/^listening$/, 60_000)
  }
  const run = async (from: MeshNode, ...args: string[]): Promise<ToolResult> => {
    const r = await from.host.exec([...SDK_TOOL_ARGV, args[0]!, from.socket, ...args.slice(1)], { allowFail: true, timeoutMs: 60_000 })
    const line = r.stdout.trim().split('\n').at(-1) ?? ''
    try { return JSON.parse(line) as ToolResult } catch { throw new Error(`sdk-tool ${args.join(' ')} printed no result: ${r.stdout}${r.stderr}`) }
  }

  await t.test('dial by short name, full name and address', async t => {
    await waitFor(async () => (await run(laptop, 'dial', 'api:8080')).ok === true, { timeoutMs: 120_000, message: 'laptop dials api:8080' })
    t.ok((await run(laptop, 'dial', 'api.warren.internal:8080')).ok, 'full name')
    t.ok((await run(laptop, 'dial', `${api.ipv4}:8080`)).ok, 'address')
    t.ok((await run(laptop, 'dial', `[${api.ipv6}]:8080`)).ok, 'IPv6 address')
  })

  await t.test('the server learns the caller\'s identity; fetch works by name', async t => {
    const r = await run(laptop, 'fetch', 'http://api:8080/')
    t.equal(r.status, 200)
    const who = JSON.parse(r.body!) as { node: { name: string }, user?: string, tags: string[] }
    t.equal(who.node.name, 'laptop', 'the caller is laptop')
    t.equal(who.user, 'alice', 'owned by alice')
    t.same(who.tags, [])
  })

  await t.test('errors say why: no such node, a forbidden port', async t => {
    t.match(await run(laptop, 'dial', 'nosuch:8080'), { code: 'ENOPEER' })
    const denied = await run(laptop, 'dial', 'api:9090')
    t.match(denied, { code: 'ENOTALLOWED', message: /policy/ }, 'the api rejects the forbidden port, so the dial fails at once')
    // The api knows laptop (laptop may reach it) but may not reach laptop: access is one way, and laptop rejects.
    t.match(await run(api, 'dial', 'laptop:8080'), { code: 'ENOTALLOWED' })
  })

  await t.test('watch reports a policy that changes what this node enforces', async t => {
    const w = await connect({ socket: laptop.socket })
    t.teardown(async () => { await w.close() })
    const ac = new AbortController()
    const seen: string[] = []
    const watching = (async () => {
      for await (const e of w.watch({ signal: ac.signal })) {
        seen.push(e.type)
        if (e.type === 'snapshot') {
          t.same(e.peers?.map(p => p.name), ['api'], 'the snapshot lists laptop\'s peers')
          // Now the api may reach laptop's port 22: laptop's own inbound filter changes.
          writeFileSync(policyFile, POLICY.replace('  ],', '    { "action": "accept", "src": ["tag:api"], "dst": ["alice@:22"] },\n  ],'))
          await mesh.admin('policy', 'set', policyFile)
        }
        if (e.type === 'policy-applied') ac.abort()
      }
    })()
    const timer = setTimeout(() => ac.abort(), 120_000)
    await watching
    clearTimeout(timer)
    t.ok(seen.includes('policy-applied'), `laptop's watch saw the new policy applied (events: ${seen.join(', ')})`)
  })

  await t.test('an app runs its own ephemeral node: it serves and dials by name, and close() leaves nothing behind', async t => {
    const app = mesh.topology.host('app')
    // `ip netns exec` puts this file over /etc/resolv.conf, which MagicDNS takes over.
    mkdirSync(`/etc/netns/${app.netns}`, { recursive: true })
    writeFileSync(`/etc/netns/${app.netns}/resolv.conf`, `nameserver ${mesh.controllerHost.address}\n`)
    t.teardown(() => { rmSync(`/etc/netns/${app.netns}`, { recursive: true, force: true }) })
    const before = await hostNetworkState(app)
    const authKey = JSON.parse(await mesh.admin('keys', 'create', '--user', 'alice', '--ephemeral', '--preapproved', '--json')).key as string
    const embedded = app.spawn([...SDK_TOOL_ARGV, 'embed', join(mesh.dir, 'embedded'), 'http://api:8080/', '7000'], {
      env: { WARREN_CONTROLLER: mesh.url, WARREN_AUTH_KEY: authKey }
    })
    t.teardown(async () => { await embedded.kill() })
    await embedded.waitForLine(/^listening$/, 180_000)
    const printed = (): Array<Record<string, unknown>> => embedded.output().split('\n').filter(l => l.startsWith('{')).map(l => JSON.parse(l) as Record<string, unknown>)
    const started = printed().find(o => 'interface' in o) as { interface: string }
    const fetched = printed().find(o => 'status' in o || 'code' in o) as ToolResult
    t.equal(fetched.status, 200, `the embedded node fetched from api by name (${JSON.stringify(fetched)})`)
    t.equal((JSON.parse(fetched.body ?? '{}') as { node?: { name: string } }).node?.name, 'embedded', 'api saw the embedded node as the caller')

    // It serves: each caller gets an answer, and the app's listener knows who called.
    for (const [from, user, tags] of [[laptop, 'alice', []], [api, undefined, ['tag:api']]] as const) {
      const r = await run(from, 'fetch', 'http://embedded:7000/')
      t.equal(r.status, 200, `${from.name} got an answer from the embedded node (${JSON.stringify(r)})`)
      const who = JSON.parse(r.body ?? '{}') as { node?: { name: string }, user?: string, tags?: string[] }
      t.same([who.node?.name, who.user, who.tags], [from.name, user, tags], `the embedded node's whois named ${from.name} as the caller, with its user and tags`)
    }
    // Without a server the app reads the verified socket itself (`w.listen(port)` alone).
    const plain = await run(laptop, 'dial', 'embedded:7001', 'hello')
    const heard = JSON.parse(plain.answer ?? '{}') as { node?: { name: string }, user?: string, tags?: string[], read?: string }
    t.same([heard.node?.name, heard.user, heard.tags, heard.read], ['laptop', 'alice', [], 'hello'], `the app read laptop's bytes and answered with who sent them (${JSON.stringify(plain)})`)
    t.same(printed().filter(o => 'connection' in o).map(o => o.connection),
      [{ name: 'laptop', user: 'alice', tags: [] }, { name: 'api', tags: ['tag:api'] }, { name: 'laptop', user: 'alice', tags: [] }],
      'the listeners\' connection events carry each caller\'s user and tags')

    // Sanity: while it runs, the state differs where close() must restore it.
    const during = await hostNetworkState(app)
    t.match(during.links, started.interface, 'the node has its interface')
    t.match(during.routes4, started.interface, 'and its routes')
    t.match(during.addresses, '100.100.100.100', 'and MagicDNS\'s address')
    t.match(during.nftables, /table inet warren/, 'and its firewall table')
    t.not(during.resolvConf, before.resolvConf, 'and MagicDNS in resolv.conf')

    // SIGTERM makes the app close its node; SIGKILL follows only if it has not exited by then.
    t.same(await embedded.kill('SIGTERM', 60_000), { code: 0, signal: null }, 'closed, the app exits by itself: nothing holds it open')
    t.match(embedded.output(), /"closed":true/, 'close() resolved')
    const after = await hostNetworkState(app)
    for (const [field, text] of Object.entries(before)) t.equal(after[field as keyof typeof after], text, `${field} is as before the node ran`)
    t.notOk(existsSync(`/var/run/wireguard/${started.interface}.sock`), 'no wireguard-go control socket is left')
    t.same(await app.pids(), [], 'no process (wireguard-go or other) is left in the namespace')
    await waitFor(async () => !(await mesh.admin('nodes', 'list')).includes('embedded'), { timeoutMs: 30_000, message: 'the ephemeral node is gone from the controller' })
  })

  await t.test('whois from outside a namespace: a mesh address, and one that is not', async t => {
    const w = await connect({ socket: laptop.socket })
    t.teardown(async () => { await w.close() })
    t.equal((await w.whois(api.ipv4)).node.name, 'api')
    t.same((await w.resolve('api')).tags, ['tag:api'])
    await t.rejects(w.whois('192.0.2.1'), { code: 'ENOPEER' })
  })

  await t.test('a stopped daemon is EDAEMON', async t => {
    await laptop.proc.kill()
    t.match(await run(laptop, 'dial', 'api:8080'), { code: 'EDAEMON', message: /no Warren daemon/ })
  })
})
