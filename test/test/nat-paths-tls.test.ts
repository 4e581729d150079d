/**
 * Path selection when a NAT lets only TCP 443 out (the lab's `udp-blocked` kind), with a
 * real controller on port 443 (its TLS relay on the same HTTPS port) and daemons: the
 * node behind that NAT can send no UDP, so neither a direct path nor the kernel UDP relay
 * works, and the pair uses the TLS relay (WireGuard's endpoint is the relay client's
 * loopback port). Pings and a TCP stream cross it, and the policy is enforced on it.
 * The cone side's own bind to the kernel relay is acked, but the relay says the other
 * side never bound, so it does not take the UDP relay either.
 */
import t from 'tap'
import { createMesh, createNatLab, netnsSkipReason } from '../src/index.js'
import { joinPair, checkRelayed, checkPings, checkStream, checkPolicy, peerOf } from '../src/path-checks.js'

const skip = netnsSkipReason()

t.test('only TCP 443 out on one side, a cone NAT on the other: the peers use the TLS relay', { skip, timeout: 580_000 }, async t => {
  const lab = await createNatLab(t, { sides: [{ name: 'x', nat: 'udp-blocked' }, { name: 'y', nat: 'cone' }] })
  const mesh = await createMesh(t, { hosts: [], lab, controllerPort: 443 })
  const [a, b] = await joinPair(mesh, ['x1', 'y1'])
  await checkRelayed(t, a, b, 'tls-relay', '127.0.0.1')
  await checkRelayed(t, b, a, 'tls-relay', '127.0.0.1')
  await checkPings(t, a, b)
  // b's echo server (joinPair) listens on 80, which the policy allows.
  await checkStream(a, b, 80)
  t.equal((await peerOf(a, b))?.path?.kind, 'tls-relay', 'still on the TLS relay after the transfer')
  await checkPolicy(t, a, b)
})
