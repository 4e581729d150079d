/**
 * demo runs a small Warren mesh on this machine, as root: a controller and three nodes
 * (laptop and phone, owned by alice and bob, and a server tagged tag:db), each in a
 * network namespace of its own, joined with auth keys through the real `warren` CLI. It
 * shows the mesh (status, ping by MagicDNS name) and the policy at work (who may reach
 * what), prints how to run commands inside the demo, and removes everything on Ctrl-C.
 *
 *   npm run demo            # stays up until Ctrl-C
 *   npm run demo -- --once  # shows everything and exits (also when stdin is not a terminal)
 */
import { writeFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { createMesh, canConnect, FLOW_ARGV, WARREN_ARGV, type Mesh, type MeshNode } from './mesh.js'
import { netnsSkipReason } from './netns.js'
import { waitFor } from './process.js'
import { createTeardownScope } from './teardown-scope.js'

const POLICY = `// Warren demo policy (Tailscale syntax, HuJSON: comments and trailing commas are fine)
{
  "groups": { "group:eng": ["alice@"] },
  "tagOwners": { "tag:db": ["alice@"] },
  "acls": [
    // people reach each other's devices, on any port
    { "action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:member:*"] },
    // engineers reach the database, on its port only
    { "action": "accept", "src": ["group:eng"], "dst": ["tag:db:5432"] },
  ],
  "tests": [
    { "src": "alice@", "accept": ["tag:db:5432"], "deny": ["tag:db:22"] },
    { "src": "bob@", "deny": ["tag:db:5432"] },
  ],
}
`

const once = process.argv.includes('--once') || process.stdin.isTTY !== true
const scope = createTeardownScope()
const { t, cleanup } = scope

const bold = (s: string): string => process.stdout.isTTY === true ? `\x1b[1m${s}\x1b[0m` : s
const step = (s: string): void => { console.log(`\n${bold(`== ${s}`)}`) }
const show = (cmd: string, out: string): void => {
  console.log(`$ ${cmd}`)
  const text = out.trimEnd()
  if (text !== '') console.log(text.replace(/^/gm, '  '))
}

async function run (): Promise<void> {
  const skip = netnsSkipReason()
  if (skip !== false) throw new Error(`the demo needs network namespaces: ${skip}`)

  step('starting a controller and three hosts in network namespaces')
  const mesh = await createMesh(t, { hosts: ['laptop', 'phone', 'db'] })
  console.log(`controller: ${mesh.url} (namespace ${mesh.controllerHost.netns})`)

  step('users, auth keys and the access policy')
  await mesh.admin('users', 'create', 'alice', '--email', 'alice@example.com')
  await mesh.admin('users', 'create', 'bob')
  const policyFile = join(mesh.dir, 'policy.hujson')
  writeFileSync(policyFile, POLICY)
  show('warren admin policy set policy.hujson', await mesh.admin('policy', 'set', policyFile, '-m', 'demo policy'))
  const key = async (...args: string[]): Promise<string> =>
    (JSON.parse(await mesh.admin('keys', 'create', '--preapproved', '--json', ...args)) as { key: string }).key
  const keys = { laptop: await key('--user', 'alice'), phone: await key('--user', 'bob'), db: await key('--user', 'alice', '--tags', 'tag:db') }
  console.log(POLICY.replace(/^/gm, '  '))

  step('joining: warren up --controller URL --auth-key KEY')
  const nodes: Record<string, MeshNode> = {}
  for (const name of ['laptop', 'phone', 'db'] as const) {
    nodes[name] = await mesh.join(name, { authKey: keys[name] })
    console.log(`${name}: up as ${name}.warren.internal, ${nodes[name]!.ipv4}`)
  }
  const { laptop, phone, db } = nodes as Record<'laptop' | 'phone' | 'db', MeshNode>
  // services on the db host: 5432 (allowed for engineers) and 22 (allowed for nobody)
  const services = db.host.spawn([...FLOW_ARGV, 'serve', '22,5432'])
  t.teardown(async () => { await services.kill() })
  await services.waitForLine(/listening/, 60_000)

  step('the mesh: status and ping by MagicDNS name')
  await waitFor(async () => (await laptop.status()).peers.length === 2, { timeoutMs: 120_000, message: 'laptop sees phone and db' })
  show('warren status   (on laptop)', (await mesh.warren(['status', '--socket', laptop.socket])).stdout)
  await waitFor(async () => (await mesh.warren(['ping', '--socket', laptop.socket, 'db'], { allowFail: true })).exitCode === 0,
    { timeoutMs: 120_000, message: 'laptop pinging db' })
  show('warren ping db   (on laptop)', (await mesh.warren(['ping', '--socket', laptop.socket, 'db'])).stdout)
  const sysPing = await laptop.host.exec(['ping', '-c', '2', '-W', '2', 'phone.warren.internal'], { allowFail: true })
  show('ping -c 2 phone.warren.internal   (on laptop, the system resolver asks MagicDNS)', sysPing.stdout.split('\n').slice(0, 3).join('\n'))

  step('the policy at work')
  const verdict = async (from: MeshNode, to: MeshNode, port: number): Promise<string> =>
    (await canConnect(from.host, to.ipv4, port, 3000)) ? 'connects' : 'blocked'
  console.log(`laptop (alice, group:eng) -> db:5432   ${await verdict(laptop, db, 5432)}`)
  console.log(`laptop (alice)            -> db:22     ${await verdict(laptop, db, 22)}   (db listens on 22, but no rule allows it)`)
  console.log(`phone  (bob)              -> db:5432   ${await verdict(phone, db, 5432)}   (bob is not in group:eng)`)
  const phoneStatus = await phone.status()
  console.log(`phone's peers: ${phoneStatus.peers.map(p => p.name).join(', ')}   (db is not sent to phone at all)`)
  const dig = await phone.host.exec(['dig', '+short', '+time=1', '+tries=1', '@100.100.100.100', 'db.warren.internal'], { allowFail: true })
  console.log(`phone asks MagicDNS for db.warren.internal: ${dig.stdout.trim() === '' ? 'no answer (NXDOMAIN)' : dig.stdout.trim()}`)
  show('warren admin policy explain alice@ tag:db:5432', await mesh.admin('policy', 'explain', 'alice@', 'tag:db:5432'))

  const cli = relative(process.cwd(), WARREN_ARGV[1]!)
  step('try it yourself (as root, in another terminal)')
  for (const n of [laptop, phone, db]) {
    console.log(`  ip netns exec ${n.host.netns} node ${cli} status --socket ${n.socket}`)
  }
  console.log(`  ip netns exec ${laptop.host.netns} ping ${db.name}.warren.internal`)
  console.log(`  node ${cli} admin --state-dir ${mesh.controllerStateDir} nodes list`)
  console.log(`  node ${cli} admin --state-dir ${mesh.controllerStateDir} policy get`)
  console.log(`  ip netns exec ${db.host.netns} nft list table inet warren`)
  if (once) return
  console.log('\nCtrl-C stops the demo and removes everything it made.')
  await new Promise<void>(resolve => {
    process.once('SIGINT', () => { resolve() })
    process.once('SIGTERM', () => { resolve() })
  })
  return undefined
}

async function main (): Promise<Mesh | void> {
  try {
    await run()
  } catch (e) {
    scope.fail()
    console.error(`\ndemo failed: ${(e as Error).message}`)
    process.exitCode = 1
  } finally {
    console.log('\nremoving the demo (namespaces, processes, interfaces, state)...')
    await cleanup()
    console.log('done')
  }
}

await main()
