import t from 'tap'
import { PROTOCOL_VERSION, type LocalStatus } from '@warren/protocol'
import { formatStatus } from '../src/commands/local-status.js'

const base: LocalStatus = { version: PROTOCOL_VERSION, backendState: 'Running', health: [], interfaceName: 'warren0', peers: [] }

t.test('status names the WireGuard implementation, its version, program and package', async t => {
  const go = formatStatus({ ...base, dataPlane: { implementation: 'wireguard-go', version: '0.0.20230223', path: '/usr/bin/wireguard-go', package: 'wireguard-go 0.0.20231211-1~bpo12+1' } })
  t.match(go, /^wireguard: wireguard-go 0\.0\.20230223 \(\/usr\/bin\/wireguard-go, package wireguard-go 0\.0\.20231211-1~bpo12\+1\)$/m)
  t.match(formatStatus({ ...base, dataPlane: { implementation: 'kernel' } }), /^wireguard: kernel$/m)
  t.match(formatStatus({ ...base, dataPlane: { implementation: 'wireguard-go', path: '/usr/bin/wireguard-go', replaced: true } }),
    /^wireguard: wireguard-go \(\/usr\/bin\/wireguard-go, replaced on disk since it started: 'warren down' and 'warren up' run the new one\)$/m)
  t.notMatch(formatStatus(base), /wireguard:/, 'nothing is said before the interface is up (or by an older daemon)')
})
