/**
 * The firewall contract (firewall-contract.ts) run against the fakes: the in-memory
 * FakeFirewall the engine's tests use, and NftablesFirewall over the fake `nft`.
 */
import t from 'tap'
import { createFakeFirewall, createFakeNft } from '../src/testing.js'
import { createNftablesFirewall } from '../src/firewall/nftables.js'
import { firewallContract } from './firewall-contract.js'

t.test('FakeFirewall', async t => {
  firewallContract(t, async () => {
    const fw = createFakeFirewall()
    return {
      firewall: fw,
      trace: async packets => fw.traceBurst(packets),
      dump: async () => fw.dump(),
      sharedPort: async () => fw.sharedPort(),
      lastApply: fw.lastApply,
      refuseNext: () => fw.refuseNext('Error: Could not process rule: refused by the test')
    }
  })
})

t.test('NftablesFirewall over the fake nft', async t => {
  firewallContract(t, async () => {
    const nft = createFakeNft()
    const table = 'wcontract'
    const fw = createNftablesFirewall({ runner: nft, table })
    return {
      firewall: fw,
      trace: async packets => nft.traceBurst(table, packets),
      dump: async () => nft.dump(table),
      sharedPort: async () => nft.tables.get(table)?.sharedPort,
      lastApply: fw.lastApply,
      refuseNext: () => nft.failNext(c => c.argv.includes('-f'), 'Error: Could not process rule: refused by the test')
    }
  })
})
