import { WarrenError, wireGuardPublicKey } from '@warren/protocol'
import { checkInterfaceName } from '../router/cidr.js'
import type { WireGuard, WireGuardBackend, WireGuardConfig, WireGuardStatus, WireGuardChanges } from './types.js'
import { checkWireGuardConfig, planWireGuard, planChanges, withoutPrivateKey, type WireGuardDevice } from './wireguard-plan.js'

/** FakeWireGuard keeps the interface in memory, for tests of the engine and the daemon. */
export interface FakeWireGuard extends WireGuard {
  /** isUp says whether the interface exists */
  readonly isUp: boolean
  /** every change that set() made, in order */
  readonly history: WireGuardChanges[]
  /** device returns the current state, without the private key */
  device: () => WireGuardStatus | undefined
  /** roam moves a peer's endpoint as WireGuard does when the peer's packets come from elsewhere */
  roam: (publicKey: string, endpoint: string) => void
}

/** createFakeWireGuard returns a FakeWireGuard that plans changes exactly like the real adapter. */
export function createFakeWireGuard (opts: { interfaceName: string, backend?: WireGuardBackend }): FakeWireGuard {
  checkInterfaceName(opts.interfaceName)
  const { interfaceName } = opts
  let dev: WireGuardDevice | undefined
  const history: WireGuardChanges[] = []
  const lastEndpoints = new Map<string, string>()

  const fake: FakeWireGuard = {
    interfaceName,
    get isUp () { return dev !== undefined },
    history,
    device: () => dev === undefined ? undefined : structuredClone(withoutPrivateKey(dev)),
    roam (publicKey, endpoint) {
      const p = dev?.peers.find(x => x.publicKey === publicKey)
      if (p === undefined) throw new Error(`fake WireGuard: no peer ${publicKey} to roam`)
      p.endpoint = endpoint
    },
    async up () {
      dev ??= { interfaceName, listenPort: 0, peers: [] }
      return opts.backend ?? 'userspace'
    },
    async set (desired: WireGuardConfig) {
      const want = checkWireGuardConfig(desired)
      if (want.interfaceName !== interfaceName) {
        throw new WarrenError('bad_config', `WireGuard config is for interface '${want.interfaceName}' but this adapter manages '${interfaceName}'`, { field: 'interfaceName' })
      }
      await fake.up()
      const d = dev!
      const plan = planWireGuard(d, want, lastEndpoints)
      if (plan.privateKey !== undefined) {
        d.privateKey = plan.privateKey
        d.publicKey = wireGuardPublicKey(plan.privateKey)
      }
      if (plan.listenPort !== undefined) d.listenPort = plan.listenPort
      d.peers = d.peers.filter(p => !plan.remove.includes(p.publicKey))
      for (const u of plan.upsert) {
        let p = d.peers.find(x => x.publicKey === u.publicKey)
        if (p === undefined) {
          p = { publicKey: u.publicKey, allowedIps: [], rxBytes: 0, txBytes: 0, persistentKeepalive: 0 }
          d.peers.push(p)
        }
        if (u.allowedIps !== undefined) p.allowedIps = [...u.allowedIps]
        if (u.endpoint !== undefined) p.endpoint = u.endpoint
        if (u.persistentKeepalive !== undefined) p.persistentKeepalive = u.persistentKeepalive
      }
      for (const key of plan.remove) lastEndpoints.delete(key)
      for (const p of want.peers) if (p.endpoint !== undefined) lastEndpoints.set(p.publicKey, p.endpoint)
      const changes = planChanges(plan)
      history.push(changes)
      return changes
    },
    async status () {
      if (dev === undefined) throw new WarrenError('wireguard_down', `WireGuard interface ${interfaceName} does not exist: run 'warren up' first`, { status: 409 })
      return structuredClone(withoutPrivateKey(dev))
    },
    async close () {
      dev = undefined
      lastEndpoints.clear()
    }
  }
  return fake
}
