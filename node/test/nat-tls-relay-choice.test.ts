import t from 'tap'
import { generateWireGuardKeyPair, generateMachineKeyPair, type RelayInfo } from '@warren/protocol'
import { tlsRelayTargets, chooseTlsRelay, type TlsRelayTarget } from '../src/nat/tls-relay-choice.js'
import { createDaemonTlsRelay, type DaemonTlsRelay } from '../src/nat/daemon-tls-relay.js'
import { createFakeTlsRelayClient, type FakeTlsRelayClient } from '../src/nat/fake-tls-relay-client.js'

/**
 * Which TLS relay carries a pair: both nodes pick the same one from the same map, pairs
 * spread over the relays, and when a relay goes only its pairs move.
 */

const key = generateWireGuardKeyPair().publicKey
const wgKey = (): string => generateWireGuardKeyPair().publicKey
const controller = { url: 'https://ctl.example.com:8443', fingerprint: 'a'.repeat(64) }
const standalone = (id: string): RelayInfo => ({ id, udp: `${id}.example.com:3480`, key, tls: `https://${id}.example.com:443`, tlsFingerprint: id.charCodeAt(0).toString(16).padStart(2, '0').repeat(32) })
const pairs = Array.from({ length: 600 }, () => [wgKey(), wgKey()] as const)

t.test('the TLS relays of a map: sorted, standalone ones pinned by their own fingerprint, the controller\'s as the node joined', async t => {
  t.same(tlsRelayTargets([], controller), [{ id: 'controller', ...controller }], 'none listed: the controller\'s own')
  t.same(tlsRelayTargets([{ id: 'udp-only', udp: 'u.example.com:3480', key }], controller), [{ id: 'controller', ...controller }], 'a kernel relay without TLS is no TLS relay')
  const [b, c] = [standalone('bravo'), standalone('charlie')]
  const embedded: RelayInfo = { id: 'controller', udp: '10.0.0.1:3480', key, tls: 'https://10.0.0.1:8443' }
  t.same(tlsRelayTargets([c, embedded, b], controller), [
    { id: 'bravo', url: b.tls, fingerprint: b.tlsFingerprint },
    { id: 'charlie', url: c.tls, fingerprint: c.tlsFingerprint },
    { id: 'controller', ...controller }
  ])
})

t.test('both nodes of a pair pick the same relay, whatever the order of keys or relays', async t => {
  const targets = tlsRelayTargets(['alpha', 'bravo', 'charlie', 'delta'].map(standalone), controller)
  const reversed = [...targets].reverse()
  for (const [a, b] of pairs.slice(0, 100)) {
    const picked = chooseTlsRelay(targets, a, b)
    if (picked.id !== chooseTlsRelay(targets, b, a).id || picked.id !== chooseTlsRelay(reversed, b, a).id) {
      t.fail(`the pair ${a} ${b} picked differently`)
      return
    }
  }
  t.pass('100 pairs, each picked the same relay both ways and in either order')
  t.same(chooseTlsRelay([targets[2]!], pairs[0]![0], pairs[0]![1]), targets[2], 'one relay carries every pair')
  t.throws(() => chooseTlsRelay([], pairs[0]![0], pairs[0]![1]), /at least one TLS relay/)
})

/** spread counts the pairs on each relay. */
function spread (targets: readonly TlsRelayTarget[]): Map<string, number> {
  const n = new Map<string, number>()
  for (const [a, b] of pairs) {
    const id = chooseTlsRelay(targets, a, b).id
    n.set(id, (n.get(id) ?? 0) + 1)
  }
  return n
}

t.test('pairs spread over the relays; a relay that goes takes only its own pairs with it', async t => {
  const targets = tlsRelayTargets(['alpha', 'bravo', 'charlie'].map(standalone), controller)
  const counts = spread(targets)
  t.equal(counts.size, 3, 'every relay carries pairs')
  // 600 pairs over 3: 200 each on average; a fair split stays well inside 120-280.
  for (const [id, n] of counts) t.ok(n > 120 && n < 280, `${id} carries ${n} of 600 pairs`)

  const without = targets.filter(x => x.id !== 'bravo')
  let moved = 0
  for (const [a, b] of pairs) {
    const before = chooseTlsRelay(targets, a, b).id
    const after = chooseTlsRelay(without, a, b).id
    if (before === 'bravo') moved++
    else if (before !== after) t.fail(`a pair on ${before} moved to ${after} when bravo went`)
  }
  t.equal(moved, counts.get('bravo'), 'only bravo\'s pairs moved')
  const after = spread(without)
  t.ok(after.get('alpha')! > counts.get('alpha')! && after.get('charlie')! > counts.get('charlie')!, 'bravo\'s pairs went to both others')

  const withDelta = [...targets, ...tlsRelayTargets([standalone('delta')], controller)]
  for (const [a, b] of pairs) {
    const now = chooseTlsRelay(withDelta, a, b).id
    if (now !== 'delta' && now !== chooseTlsRelay(targets, a, b).id) t.fail('a new relay took a pair it did not win')
  }
  t.ok(spread(withDelta).get('delta')! > 0, 'a new relay takes a share')
})

/** daemon makes a daemon's TLS relay client over fake relay clients, which it records by relay id. */
function daemon (self: string, relays: readonly RelayInfo[]) {
  const clients = new Map<string, FakeTlsRelayClient>()
  const d: DaemonTlsRelay = createDaemonTlsRelay({
    controller,
    relays,
    machineKey: generateMachineKeyPair(),
    wgKey: self,
    wgPort: 51820,
    openClient: target => {
      const c = createFakeTlsRelayClient()
      clients.set(target.id, c)
      return c
    }
  })
  const moved: string[] = []
  d.onMoved?.(peer => moved.push(peer))
  return { d, clients, moved }
}

t.test('a daemon connects to every TLS relay, carries each peer on its pair\'s relay, and moves the pairs of a relay that goes', async t => {
  const relays = ['alpha', 'bravo', 'charlie'].map(standalone)
  const [ka, kb] = [wgKey(), wgKey()]
  const a = daemon(ka, relays)
  const b = daemon(kb, relays)
  t.teardown(async () => { await a.d.close(); await b.d.close() })
  t.same([...a.clients.keys()], ['alpha', 'bravo', 'charlie'], 'one connection per relay, before any peer needs it')

  const epA = await a.d.endpoint(kb)
  const epB = await b.d.endpoint(ka)
  const onRelay = a.d.relayId!(kb)!
  t.equal(b.d.relayId!(ka), onRelay, 'both nodes carry the pair on the same relay')
  t.equal(a.clients.get(onRelay)!.open.get(kb), epA, 'the endpoint is that relay\'s')
  t.equal(b.clients.get(onRelay)!.open.get(ka), epB)
  t.equal([...a.clients.values()].filter(c => c.open.size > 0).length, 1, 'and no other relay holds the peer')

  a.clients.get(onRelay)!.setConnected(false)
  t.notOk(a.d.connected(kb), 'the pair\'s relay down: the pair\'s path is down')
  t.ok(a.d.connected(), 'though other relays are up')
  a.clients.get(onRelay)!.setConnected(true)

  const rest = relays.filter(r => r.id !== onRelay)
  a.d.followMap(rest)
  b.d.followMap(rest)
  t.same(a.moved, [kb], 'the pair on the relay that went is moved')
  t.same(b.moved, [ka])
  t.ok(a.clients.get(onRelay)!.closed, 'the connection to the relay that went is closed')
  t.equal(a.d.relayId!(kb), undefined, 'until asked again, the peer has no relay')
  await a.d.endpoint(kb)
  await b.d.endpoint(ka)
  const next = a.d.relayId!(kb)
  t.not(next, onRelay)
  t.equal(b.d.relayId!(ka), next, 'both nodes moved to the same relay')

  const withZulu = [...rest, standalone('zulu')]
  a.d.followMap(withZulu)
  t.ok(a.clients.has('zulu'), 'a new relay gets a connection')
  const zuluWins = chooseTlsRelay(tlsRelayTargets(withZulu, controller), ka, kb).id === 'zulu'
  t.same(a.moved, zuluWins ? [kb, kb] : [kb], 'a pair moves to a new relay only if the new relay wins the pair')

  const old = a.clients.get(rest[0]!.id)!
  a.d.followMap(withZulu.map(r => r === rest[0] ? { ...r, tlsFingerprint: 'f'.repeat(64) } : r))
  t.ok(old.closed, 'a relay with a new certificate: the old connection is closed')
  t.not(a.clients.get(rest[0]!.id), old, 'and a new one pinned to the new certificate is opened')
})

t.test('a pair moved while its endpoint was opening ends up on the new relay only', async t => {
  const relays = ['alpha', 'bravo', 'charlie'].map(standalone)
  const [ka, kc] = [wgKey(), wgKey()]
  const a = daemon(ka, relays)
  t.teardown(async () => { await a.d.close() })
  const first = chooseTlsRelay(tlsRelayTargets(relays, controller), ka, kc).id
  const old = a.clients.get(first)!
  const opening = a.d.endpoint(kc)
  a.d.followMap(relays.filter(r => r.id !== first))
  const ep = await opening
  const now = a.d.relayId!(kc)!
  t.not(now, first, 'on another relay')
  t.equal(a.clients.get(now)!.open.get(kc), ep, 'the endpoint returned is the new relay\'s')
  t.notOk(old.open.has(kc), 'the old relay holds nothing for the peer')
  await a.d.close()
  await t.rejects(a.d.endpoint(kc), { code: 'closed' }, 'a closed client opens nothing')
})
