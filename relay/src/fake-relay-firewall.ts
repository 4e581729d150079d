import { applyToState, type FirewallState, type RelayFirewall } from './relay-firewall.js'
import type { RelayElementChange } from './relay-nft.js'

/** FakeRelayFirewall keeps the relay's table in memory and records each change. */
export interface FakeRelayFirewall extends RelayFirewall {
  readonly isUp: boolean
  readonly changes: RelayElementChange[]
  /** failNext makes the next apply throw (to test that a failed install leaves no state) */
  failNext: (message: string) => void
}

export function createFakeRelayFirewall (): FakeRelayFirewall {
  const state: FirewallState = { ports: new Set(), forwards: new Map() }
  const changes: RelayElementChange[] = []
  let up = false
  let failure: string | undefined
  return {
    get isUp () { return up },
    changes,
    failNext: m => { failure = m },
    async up () { up = true; state.ports.clear(); state.forwards.clear() },
    async apply (c) {
      if (!up) throw new Error('relay table is not up')
      if (failure !== undefined) {
        const m = failure
        failure = undefined
        throw new Error(m)
      }
      changes.push(c)
      applyToState(state, c)
    },
    forward: p => state.forwards.get(p),
    ports: () => state.ports,
    async down () { up = false; state.ports.clear(); state.forwards.clear() }
  }
}
