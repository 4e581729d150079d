import { renderRelayTable, renderDeleteTable, renderElements, type Forward, type RelayElementChange } from './relay-nft.js'
import { runCommand } from './command.js'

/**
 * RelayFirewall keeps the relay's nftables table: which ports are allocated and which
 * forwards are installed. Each change is one `nft -f -` transaction. The real one runs
 * nft; tests use createFakeRelayFirewall (from @warren/relay/testing), which keeps the
 * same state in memory.
 */
export interface RelayFirewall {
  /** up creates the table, empty */
  up: () => Promise<void>
  apply: (change: RelayElementChange) => Promise<void>
  /** forward is the installed forward for a port */
  forward: (port: number) => Forward | undefined
  ports: () => ReadonlySet<number>
  /** down deletes the table */
  down: () => Promise<void>
}

/** NftExec runs `nft` with arguments and a script on stdin; it throws with nft's stderr. */
export type NftExec = (args: string[], input: string) => Promise<void>

/** execNft runs the system's nft. */
export const execNft: NftExec = async (args, input) => { await runCommand(['nft', ...args], input) }

/**
 * FirewallState is the in-memory mirror both the real and the fake firewall keep, so
 * each transaction can name exactly the elements it replaces.
 */
export interface FirewallState {
  ports: Set<number>
  forwards: Map<number, Forward>
}

/** applyToState records a change in the mirror (after nft accepted it). */
export function applyToState (s: FirewallState, c: RelayElementChange): void {
  for (const f of c.removeForwards ?? []) s.forwards.delete(f.port)
  for (const p of c.removePorts ?? []) {
    s.ports.delete(p)
    s.forwards.delete(p)
  }
  for (const p of c.addPorts ?? []) s.ports.add(p)
  for (const f of c.setForwards ?? []) s.forwards.set(f.port, f)
}

/** createRelayFirewall talks to the kernel through nft (exec is a seam for tests). */
export function createRelayFirewall (exec: NftExec = execNft): RelayFirewall {
  const state: FirewallState = { ports: new Set(), forwards: new Map() }
  return {
    async up () {
      await exec(['-f', '-'], renderRelayTable())
      state.ports.clear()
      state.forwards.clear()
    },
    async apply (c) {
      // Removing a port's forward with the port: nft refuses to delete elements that are not there.
      const removeForwards = [...(c.removeForwards ?? []), ...(c.removePorts ?? []).map(p => state.forwards.get(p)).filter((f): f is Forward => f !== undefined)]
      const change = { ...c, removeForwards: [...new Map(removeForwards.map(f => [f.port, f])).values()] }
      const script = renderElements(change, p => state.forwards.get(p))
      if (script !== '') await exec(['-f', '-'], script)
      applyToState(state, change)
    },
    forward: p => state.forwards.get(p),
    ports: () => state.ports,
    async down () {
      await exec(['-f', '-'], renderDeleteTable())
      state.ports.clear()
      state.forwards.clear()
    }
  }
}
