import t from 'tap'
import { generateWireGuardKeyPair, type RelayInfo } from '@warren/protocol'
import { chooseTlsRelay } from '../src/nat/tls-relay-client.js'

/**
 * Which TLS relay a daemon uses: every node picks the same one from the same map, so
 * both nodes of a pair meet there.
 */

const key = generateWireGuardKeyPair().publicKey
const controller = { url: 'https://ctl.example.com:8443', fingerprint: 'a'.repeat(64) }
const standalone = (id: string): RelayInfo => ({ id, udp: `${id}.example.com:3480`, key, tls: `https://${id}.example.com:443`, tlsFingerprint: id.charCodeAt(0).toString(16).padStart(2, '0').repeat(32) })

t.test('with no TLS relay in the map, the controller\'s own, as the node reached the controller', async t => {
  t.same(chooseTlsRelay([], controller), { id: 'controller', ...controller })
  t.same(chooseTlsRelay([{ id: 'udp-only', udp: 'u.example.com:3480', key }], controller), { id: 'controller', ...controller }, 'a kernel relay without TLS is no TLS relay')
})

t.test('the listed TLS relay with the lowest id, pinned by its own fingerprint, whatever the order', async t => {
  const [b, c] = [standalone('bravo'), standalone('charlie')]
  t.same(chooseTlsRelay([c, b], controller), { id: 'bravo', url: b.tls, fingerprint: b.tlsFingerprint })
  t.same(chooseTlsRelay([b, c], controller), { id: 'bravo', url: b.tls, fingerprint: b.tlsFingerprint })
})

t.test('the controller\'s listed relay is reached at the URL the node joined and pinned by the controller\'s fingerprint', async t => {
  const embedded: RelayInfo = { id: 'controller', udp: '10.0.0.1:3480', key, tls: 'https://10.0.0.1:8443' }
  t.same(chooseTlsRelay([standalone('edge'), embedded], controller), { id: 'controller', ...controller }, '"controller" sorts before "edge"')
  t.same(chooseTlsRelay([standalone('alpha'), embedded], controller).id, 'alpha')
})
