import t from 'tap'
import { randomBytes } from 'node:crypto'
import {
  encodeStunBindingRequest, parseStunBindingRequest, encodeStunBindingResponse, parseStunBindingResponse,
  classifyWgPortPacket, encodeControl, ControlKind, stunServerAddress
} from '../src/index.js'

t.test('a binding response carries the requester address back, IPv4 and IPv6', async t => {
  for (const from of [{ address: '198.51.100.7', port: 41641 }, { address: '2001:db8::1:2', port: 3478 }]) {
    const txid = randomBytes(12)
    const req = parseStunBindingRequest(encodeStunBindingRequest(txid))
    t.same(Buffer.from(req!.txid), txid)
    const res = parseStunBindingResponse(encodeStunBindingResponse(txid, from))
    t.same(res, { txid: Uint8Array.from(txid), mapped: from })
  }
})

t.test('a known RFC 5769 response decodes (XOR-MAPPED-ADDRESS 192.0.2.1:32853)', async t => {
  // RFC 5769 2.2, with the SOFTWARE, MESSAGE-INTEGRITY and FINGERPRINT attributes left out
  const hex = '0101000c2112a442b7e7a701bc34d686fa87dfae' + '002000080001a147e112a643'
  const res = parseStunBindingResponse(Buffer.from(hex, 'hex'))
  t.same(res?.mapped, { address: '192.0.2.1', port: 32853 })
})

t.test('truncated or foreign packets are not STUN', async t => {
  const good = encodeStunBindingResponse(randomBytes(12), { address: '192.0.2.1', port: 1 })
  t.equal(parseStunBindingResponse(good.subarray(0, 25)), undefined)
  t.equal(parseStunBindingRequest(good), undefined)
  t.equal(parseStunBindingResponse(Uint8Array.of(1, 0, 0, 0)), undefined)
})

t.test('the WireGuard port tells WireGuard, STUN and control packets apart', async t => {
  const wg = new Uint8Array(148); wg[0] = 1
  wg.set([0x21, 0x12, 0xa4, 0x42], 4) // a sender index equal to the STUN cookie is still WireGuard
  t.equal(classifyWgPortPacket(wg), 'wireguard')
  for (const type of [2, 3, 4]) { const p = new Uint8Array(32); p[0] = type; t.equal(classifyWgPortPacket(p), 'wireguard') }
  t.equal(classifyWgPortPacket(encodeStunBindingResponse(randomBytes(12), { address: '192.0.2.1', port: 9 })), 'stun')
  t.equal(classifyWgPortPacket(encodeControl(ControlKind.DiscoPing, randomBytes(40))), 'control')
  t.equal(classifyWgPortPacket(encodeStunBindingRequest(randomBytes(12))), 'other')
  t.equal(classifyWgPortPacket(Uint8Array.of(5, 0, 0, 0)), 'other')
})

t.test('stunServerAddress reads host:port, [v6]:port and host-less :port (the controller URL\'s host)', async t => {
  const url = 'https://ctl.example:8443'
  t.same(stunServerAddress('192.0.2.1:3478', url), { host: '192.0.2.1', port: 3478 })
  t.same(stunServerAddress('[2001:db8::1]:3479', url), { host: '2001:db8::1', port: 3479 })
  t.same(stunServerAddress(':3478', url), { host: 'ctl.example', port: 3478 })
  t.same(stunServerAddress(':3478', 'https://[2001:db8::2]:443'), { host: '2001:db8::2', port: 3478 })
  for (const bad of ['3478', 'host:', 'host:99999', '[x:1', 'a:b:3478', 'host:0']) t.throws(() => stunServerAddress(bad, url), { code: 'bad_host_port' }, bad)
})
