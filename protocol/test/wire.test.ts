import t from 'tap'
import {
  validate, parseJson, RegisterRequest, CreateAuthKeyRequest, newCredential, parseCredential,
  normalizeFingerprint, displayFingerprint, checkProtocolVersion, PROTOCOL_VERSION, sanitizeHostname,
  parseDuration, applyDelta, type Netmap, type Peer, generateWireGuardKeyPair, generateMachineKeyPair
} from '../src/index.js'

t.test('validate refuses unknown fields, wrong types and oversize strings, naming the field', async t => {
  t.throws(() => validate(CreateAuthKeyRequest, { user: 'alice', colour: 'red' }), /\/colour: is not a known field/)
  t.throws(() => validate(CreateAuthKeyRequest, { user: 'alice', reusable: 'yes' }), /\/reusable/)
  t.throws(() => validate(CreateAuthKeyRequest, { user: 'a'.repeat(500) }), /\/user/)
  t.throws(() => validate(CreateAuthKeyRequest, { tags: ['server'] }), /\/tags\/0: 'server' has the wrong form/)
  t.same(validate(CreateAuthKeyRequest, { user: 'alice', tags: ['tag:web'] }), { user: 'alice', tags: ['tag:web'] })
  t.throws(() => parseJson(CreateAuthKeyRequest, '{"user":'), /not valid JSON/)
  t.throws(() => validate(RegisterRequest, {}), /is required but missing/)
})

t.test('credentials round-trip and carry the certificate pin', async t => {
  const fp = 'ab'.repeat(32)
  const c = newCredential('auth', fp)
  const p = parseCredential(c.key, 'auth')
  t.equal(p.fingerprint, fp)
  t.equal(p.id.length, 12)
  t.throws(() => parseCredential(c.key, 'api'), /malformed API key/)
  t.throws(() => parseCredential(c.key.slice(0, -3), 'auth'), /pin part is damaged/)
  t.throws(() => parseCredential('hello', 'auth'), /should look like wrnauth-/)
  const noPin = newCredential('api')
  t.equal(parseCredential(noPin.key, 'api').fingerprint, undefined)
})

t.test('fingerprints are accepted in the usual forms', async t => {
  const hex = 'a1'.repeat(32)
  const disp = displayFingerprint(hex)
  t.match(disp, /^A1:A1:/)
  t.equal(normalizeFingerprint(disp), hex)
  t.equal(normalizeFingerprint('SHA256:' + hex.toUpperCase()), hex)
  t.throws(() => normalizeFingerprint('1234'), /not a SHA-256 certificate fingerprint/)
})

t.test('protocol version mismatch gives a clear error', async t => {
  t.doesNotThrow(() => checkProtocolVersion(PROTOCOL_VERSION))
  t.throws(() => checkProtocolVersion(PROTOCOL_VERSION + 1, 'controller'), /controller speaks Warren protocol version \d+, but this build speaks/)
  t.throws(() => checkProtocolVersion(0), { code: 'protocol_version' })
})

t.test('hostnames become DNS-safe labels; durations parse', async t => {
  t.equal(sanitizeHostname('My_Laptop.local'), 'my-laptop')
  t.equal(sanitizeHostname('---'), 'node')
  t.equal(sanitizeHostname('x'.repeat(80)).length, 63)
  t.equal(parseDuration('24h'), 86400000)
  t.equal(parseDuration('90'), 90000)
  t.throws(() => parseDuration('soon', 'expiry'), /expiry 'soon' is not a duration/)
})

t.test('applyDelta adds, changes and removes peers without touching the input', async t => {
  const peer = (id: string, name: string): Peer => ({
    id, name, fqdn: `${name}.warren.internal`, tags: [], wgKey: generateWireGuardKeyPair().publicKey,
    ipv4: '100.64.0.2', ipv6: 'fd7a::2', endpoints: [], online: true
  })
  const nm: Netmap = {
    self: {
      id: 'n1', name: 'a', fqdn: 'a.warren.internal', tags: [], machineKey: generateMachineKeyPair().publicKey,
      wgKey: generateWireGuardKeyPair().publicKey, ipv4: '100.64.0.1', ipv6: 'fd7a::1', status: 'active',
      ephemeral: false, online: true, created: new Date().toISOString(), endpoints: []
    },
    peers: [peer('p1', 'b'), peer('p2', 'c')],
    filter: [],
    dns: { domain: 'warren.internal', magicDns: true }
  }
  const after = applyDelta(nm, { type: 'delta', seq: 2, peersRemoved: ['p1'], peersChanged: [peer('p3', 'd'), { ...nm.peers[1]!, online: false }] })
  t.same(after.peers.map(p => p.id).sort(), ['p2', 'p3'])
  t.equal(after.peers.find(p => p.id === 'p2')!.online, false)
  t.equal(nm.peers.length, 2, 'input unchanged')
})

t.test('a refused value is echoed with its control characters escaped', async t => {
  const hostile = 'tag:web\u001b[2J\u202e'
  let err: Error | undefined
  try { validate(CreateAuthKeyRequest, { tags: [hostile] }) } catch (e) { err = e as Error }
  if (err === undefined) { t.fail('a tag with control characters was accepted'); return }
  t.notMatch(err.message, /\u001b|\u202e/, 'no raw escape or bidi character in the message')
  t.match(err.message, /tag:web\\x1b\[2J\\u202e/, 'the value is shown escaped')
})
