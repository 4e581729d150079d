import t from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { createInterface } from 'node:readline'
import { tempDir, pinnedRequest, socketRequest, registration, type HttpAnswer } from './helpers.js'

const serverModule = fileURLToPath(new URL('../src/server.js', import.meta.url))

interface Child { proc: ChildProcess, url: string, fingerprint: string, adminSocket: string }

/** startChild runs a controller in its own process, as `warren controller serve` would. */
async function startChild (t: { teardown: (fn: () => unknown) => void }, stateDir: string): Promise<Child> {
  const script = `
    import { startController } from ${JSON.stringify(serverModule)}
    const c = await startController({ stateDir: ${JSON.stringify(stateDir)}, listen: '127.0.0.1:0', logger: false, rateLimit: false })
    console.log(JSON.stringify({ url: c.url, fingerprint: c.fingerprint, adminSocket: c.adminSocket }))
  `
  const proc = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL') })
  let stderr = ''
  proc.stderr!.on('data', (d: Buffer) => { stderr += d.toString() })
  const line = await new Promise<string>((resolve, reject) => {
    const rl = createInterface({ input: proc.stdout! })
    rl.once('line', resolve)
    proc.once('exit', code => { reject(new Error(`controller exited with ${String(code)} before it was ready: ${stderr}`)) })
  })
  return { proc, ...JSON.parse(line) }
}

async function kill9 (child: Child): Promise<void> {
  const exited = new Promise(resolve => child.proc.once('exit', resolve))
  child.proc.kill('SIGKILL')
  await exited
}

t.test('acknowledged writes survive kill -9 of the controller', async t => {
  const dir = await tempDir(t)
  const first = await startChild(t, dir)
  const api = await socketRequest(first.adminSocket, 'POST', '/v1/apikeys', { description: 'durability' })
  t.equal(api.status, 201)
  const auth = { authorization: `Bearer ${api.body.key as string}` }
  const https = async (method: string, path: string, body?: unknown): Promise<HttpAnswer> => await pinnedRequest(first.url, first.fingerprint, method, path, body, auth)

  t.equal((await https('POST', '/v1/users', { name: 'alice' })).status, 201)
  const key = await https('POST', '/v1/authkeys', { user: 'alice', reusable: true })
  t.equal(key.status, 201)
  const info = (await https('GET', '/v1/machine/key')).body
  const nodes = []
  for (const hostname of ['laptop', 'phone', 'nas']) {
    const r = await https('POST', '/v1/machine/register', registration(info.controllerKey, { authKey: key.body.key, hostname }))
    t.equal(r.status, 200)
    nodes.push(r.body.node)
  }
  t.equal((await https('POST', '/v1/nodes/phone/approve')).status, 200)
  t.equal((await https('POST', '/v1/nodes/nas/rename', { name: 'storage' })).status, 200)

  // Many writes at once; kill as soon as half of them are acknowledged.
  const acked: string[] = []
  const names = Array.from({ length: 40 }, (_, i) => `burst${i}`)
  const killed = new Promise<void>(resolve => {
    for (const name of names) {
      https('POST', '/v1/users', { name }).then(r => {
        if (r.status === 201) acked.push(name)
        if (acked.length === 20) resolve()
      }, () => {})
    }
  })
  await killed
  const ackedAtKill = [...acked]
  await kill9(first)

  const second = await startChild(t, dir)
  t.teardown(async () => { await kill9(second) })
  t.equal(second.fingerprint, first.fingerprint, 'same certificate after the restart')
  const again = async (method: string, path: string, body?: unknown): Promise<HttpAnswer> => await pinnedRequest(second.url, second.fingerprint, method, path, body, auth)
  const users = (await again('GET', '/v1/users'))
  t.equal(users.status, 200, 'the API key still works')
  const have = new Set(users.body.users.map((u: { name: string }) => u.name))
  t.ok(have.has('alice'))
  t.same(ackedAtKill.filter(n => !have.has(n)), [], 'every acknowledged user is there')
  const after = (await again('GET', '/v1/nodes')).body.nodes
  t.same(after.map((n: { name: string }) => n.name).sort(), ['laptop', 'phone', 'storage'])
  for (const n of nodes) {
    const m = after.find((x: { id: string }) => x.id === n.id)
    t.equal(m.ipv4, n.ipv4, `${n.name as string} keeps its IPv4`)
    t.equal(m.ipv6, n.ipv6, `${n.name as string} keeps its IPv6`)
  }
  t.same(after.map((n: { status: string }) => n.status).sort(), ['active', 'pending', 'pending'])
  const keys = (await again('GET', '/v1/authkeys')).body.authKeys
  t.equal(keys[0].used, true, 'the key is still marked used')
  const audit = (await again('GET', '/v1/audit?limit=1000')).body.entries
  t.ok(audit.some((e: { action: string, target: string }) => e.action === 'node.rename' && e.target === 'storage'), 'the audit log survived')
  const next = await again('POST', '/v1/machine/register', registration(info.controllerKey, { authKey: key.body.key, hostname: 'laptop' }))
  t.equal(next.body.node.name, 'laptop-1')
  t.equal(next.body.node.ipv4, '100.64.0.4', 'the address counter survived')
})
