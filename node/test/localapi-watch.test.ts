import t from 'tap'
import { promises as fs, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PROTOCOL_VERSION, type LocalStatus, type LocalPeerStatus, type LocalWatchEvent } from '@warren/protocol'
import { createLocalClient } from '@warren/sdk'
import { startLocalApi, type LocalBackend } from '../src/localapi/server.js'
import { createChangeFeed, diffStatus } from '../src/localapi/watch.js'

/**
 * GET /v1/watch: a snapshot, then what changed each time the daemon announces a change,
 * read through the SDK's LocalAPI client.
 */

const key = (n: number): string => Buffer.alloc(32, n).toString('base64')
const peer = (n: number, over: Partial<LocalPeerStatus> = {}): LocalPeerStatus => ({
  id: `p${n}`, name: `n${n}`, fqdn: `n${n}.warren.internal`, tags: [], ipv4: `100.64.0.${n}`, ipv6: `fd7a:115c:a1e0::${n}`,
  wgKey: key(n), online: true, rxBytes: 0, txBytes: 0, ...over
})
const status = (state: LocalStatus['backendState'], peers: LocalPeerStatus[]): LocalStatus => ({ version: PROTOCOL_VERSION, backendState: state, health: [], interfaceName: 'wg0', peers })

t.test('diffStatus names what changed and ignores traffic counters', async t => {
  const before = status('Running', [peer(1), peer(2), peer(3, { online: false })])
  const after = status('Running', [peer(1, { rxBytes: 900, txBytes: 10 }), peer(3, { online: true, tags: ['tag:db'] }), peer(4)])
  const events = diffStatus(before, after, 'T')
  t.same(events.map(e => [e.type, e.peer?.name, e.fields]), [
    ['peer-removed', 'n2', undefined],
    ['peer-added', 'n4', undefined],
    ['peer-up', 'n3', undefined],
    ['peer-changed', 'n3', ['tags']]
  ])
  t.same(diffStatus(before, status('Stopped', before.peers), 'T').map(e => [e.type, e.backendState]), [['state', 'Stopped']])
  const moved = status('Running', [peer(1, { path: { kind: 'direct', endpoint: '192.0.2.1:41641' } })])
  const relayed = status('Running', [peer(1, { path: { kind: 'udp-relay', endpoint: '198.51.100.9:40001', relay: 'r1' } })])
  t.same(diffStatus(moved, relayed, 'T').map(e => e.fields), [['path']], 'a path change is a change')
  t.same(diffStatus(moved, status('Running', [peer(1, { path: { kind: 'direct', endpoint: '192.0.2.1:41641', latencyMs: 3 } })]), 'T'), [], 'a new latency is not')
})

t.test('a watcher gets a snapshot, then each change, until it stops', async t => {
  let current = status('Starting', [])
  const feed = createChangeFeed()
  const b: LocalBackend = {
    status: async () => current,
    peers: () => ({ backendState: current.backendState, peers: [] }),
    up: async () => current,
    down: async () => current,
    ip: () => ({ name: 'x', addresses: [] }),
    ping: async () => { throw new Error('no') },
    whois: () => { throw new Error('no') },
    netcheck: async () => { throw new Error('no') },
    changes: feed
  }
  const dir = mkdtempSync(join(tmpdir(), 'localapi-watch-'))
  const socketPath = join(dir, 'warrend.sock')
  const api = await startLocalApi({ socketPath, daemon: b })
  t.teardown(async () => { await api.close(); await fs.rm(dir, { recursive: true, force: true }) })

  const ac = new AbortController()
  const got: LocalWatchEvent[] = []
  const done = (async () => {
    for await (const e of createLocalClient({ socketPath }).watch({ signal: ac.signal })) {
      got.push(e)
      if (e.type === 'snapshot') {
        current = status('Running', [peer(1)])
        feed.notify('state')
      } else if (e.type === 'peer-added') {
        current = status('Running', [peer(1, { online: false })])
        feed.notify('policy')
      } else if (e.type === 'policy-applied') {
        ac.abort()
      }
    }
  })()
  await done
  t.same(got.map(e => [e.type, e.backendState ?? e.peer?.name ?? null]), [
    ['snapshot', 'Starting'],
    ['state', 'Running'],
    ['peer-added', 'n1'],
    ['peer-down', 'n1'],
    ['policy-applied', null]
  ])
  // The watcher is gone from the feed: announcing more reaches nobody and breaks nothing.
  feed.notify('map')
  t.equal((await createLocalClient({ socketPath }).status()).backendState, 'Running')
})

t.test('watching a daemon that is not there says so', async t => {
  const it = createLocalClient({ socketPath: join(tmpdir(), 'no-such-warrend.sock') }).watch()
  await t.rejects((async () => { for await (const e of it) t.fail(`no event: ${e.type}`) })(), { code: 'daemon_unreachable' })
})
