import { randomBytes } from 'node:crypto'
import { generateMachineKeyPair, generateWireGuardKeyPair, type MachineKeyPair, type Node } from '@warren/protocol'

/** Test nodes for the map tests, with and without sockets. */

let counter = 0

export interface TestNode { node: Node, machine: MachineKeyPair }

/** makeNode builds an active node with fresh keys and unique addresses. */
export function makeNode (change: Partial<Node> = {}): TestNode {
  const machine = generateMachineKeyPair()
  const i = ++counter
  const name = change.name ?? `n${i}`
  const node: Node = {
    id: `node${i}${randomBytes(3).toString('hex')}`,
    name,
    fqdn: `${name}.warren.internal`,
    user: 'alice',
    tags: [],
    machineKey: machine.publicKey,
    wgKey: generateWireGuardKeyPair().publicKey,
    ipv4: `100.64.${Math.floor(i / 250)}.${(i % 250) + 1}`,
    ipv6: `fd7a:115c:a1e0::${i.toString(16)}`,
    status: 'active',
    ephemeral: false,
    online: false,
    created: new Date().toISOString(),
    endpoints: [],
    ...change
  }
  return { node, machine }
}

