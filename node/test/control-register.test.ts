import t from 'tap'
import {
  generateMachineKeyPair, generateWireGuardKeyPair, verifyMessage, verifyWireGuardProof, registerSigningPayload,
  REGISTER_DOMAIN, PROTOCOL_VERSION, type RegisterRequest, type Node
} from '@warren/protocol'
import { registerNode } from '../src/control/register.js'
import type { JsonTransport } from '@warren/sdk/transport'

/** fakeController checks a registration the way the controller does and answers like it. */
function fakeController (opts: { version?: number } = {}) {
  const ctl = generateWireGuardKeyPair()
  const seen: RegisterRequest[] = []
  const asked: string[] = []
  const transport: JsonTransport = {
    async request<T>(method: string, path: string, body?: unknown) {
      if (method === 'GET' && path.split('?')[0] === '/v1/machine/key') {
        asked.push(path)
        return { status: 200, body: { version: opts.version ?? PROTOCOL_VERSION, controllerKey: ctl.publicKey, domain: 'warren.internal' } as T }
      }
      const r = body as RegisterRequest
      seen.push(r)
      const { signature, wgProof, ...unsigned } = r
      const payload = registerSigningPayload(unsigned)
      if (!verifyMessage(r.machineKey, REGISTER_DOMAIN, payload, signature) || !verifyWireGuardProof(ctl.privateKey, r.wgKey, REGISTER_DOMAIN, payload, wgProof)) {
        return { status: 401, body: { error: { code: 'bad_signature', message: 'signature does not verify' } } as T }
      }
      if (r.authKey === 'wrong') return { status: 401, body: { error: { code: 'auth_key_expired', message: 'auth key abc123 expired at 2026-01-01; create a new one' } } as T }
      const node: Node = {
        id: 'n1', name: r.hostname, fqdn: `${r.hostname}.warren.internal`, tags: r.requestTags ?? [], machineKey: r.machineKey, wgKey: r.wgKey,
        ipv4: '100.64.0.1', ipv6: 'fd7a:115c:a1e0:1::1', status: 'active', ephemeral: false, online: false,
        created: new Date().toISOString(), endpoints: []
      }
      return { status: 200, body: { node } as T }
    },
    close () {}
  }
  return { transport, seen, asked }
}

t.test('registers with a signed request and a WireGuard proof', async t => {
  const c = fakeController()
  const mk = generateMachineKeyPair()
  const wg = generateWireGuardKeyPair()
  const r = await registerNode(c.transport, { machineKey: mk, wireguardPrivateKey: wg.privateKey, hostname: 'laptop', authKey: 'k', requestTags: ['tag:web'] })
  t.equal(r.node.name, 'laptop')
  t.equal(r.node.wgKey, wg.publicKey)
  t.equal(r.controller.domain, 'warren.internal')
  t.same(c.seen[0]!.requestTags, ['tag:web'])
  t.notMatch(JSON.stringify(c.seen[0]), wg.privateKey, 'the WireGuard private key never leaves the node')
  t.notMatch(JSON.stringify(c.seen[0]), mk.secretKey, 'the machine secret key never leaves the node')
})

t.test('logging in again sends no auth key', async t => {
  const c = fakeController()
  await registerNode(c.transport, { machineKey: generateMachineKeyPair(), wireguardPrivateKey: generateWireGuardKeyPair().privateKey, hostname: 'h' })
  t.equal(c.seen[0]!.authKey, undefined)
})

t.test('an auth key refusal surfaces with the controller\'s code and message', async t => {
  const c = fakeController()
  await t.rejects(registerNode(c.transport, { machineKey: generateMachineKeyPair(), wireguardPrivateKey: generateWireGuardKeyPair().privateKey, hostname: 'h', authKey: 'wrong' }),
    { code: 'auth_key_expired', message: /expired at 2026-01-01; create a new one/, status: 401 })
})

t.test('an older controller gets a registration in its own version', async t => {
  const c = fakeController({ version: 1 })
  const reg = await registerNode(c.transport, { machineKey: generateMachineKeyPair(), wireguardPrivateKey: generateWireGuardKeyPair().privateKey, hostname: 'h', authKey: 'k' })
  t.equal(reg.node.name, 'h', 'it registers (the signature covers the version it sent)')
  t.equal(c.seen[0]!.version, 1)
  t.equal(c.asked[0], `/v1/machine/key?version=${PROTOCOL_VERSION}`, 'the node named its own version when it asked')
})

t.test('a controller of another protocol version is refused before sending anything', async t => {
  const c = fakeController({ version: 99 })
  await t.rejects(registerNode(c.transport, { machineKey: generateMachineKeyPair(), wireguardPrivateKey: generateWireGuardKeyPair().privateKey, hostname: 'h', authKey: 'k' }),
    { code: 'protocol_version' })
  t.equal(c.seen.length, 0)
})
