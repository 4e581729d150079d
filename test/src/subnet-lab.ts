import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createTopology, type Host } from './netns.js'
import { createMesh, type Mesh, type MeshNode, type TestWithResult } from './mesh.js'

/**
 * subnet-lab builds a subnet router's world: a controller, a LAN (its own bridged network)
 * with a host that runs no Warren, a router node with a leg on the backbone and one on the
 * LAN, and a client node on the backbone only. alice owns both nodes; the router is
 * tagged `tag:router`. Nothing is advertised yet: the test or benchmark does that. With
 * `routers: 2` a second router node (`router2`, tagged alike) has legs on the same two
 * networks, for failover between routers.
 */
export interface SubnetLab {
  mesh: Mesh
  /** the router node and the client node (alice's, untagged) */
  router: MeshNode
  client: MeshNode
  /** the second router, with `routers: 2` */
  router2?: MeshNode
  /** lanHost runs no Warren; its address is on the LAN */
  lanHost: Host
  /** the LAN, like 10.37.12.0/24 */
  lan: string
  /** the router's interface on the LAN, and its address there */
  routerLan: { name: string, address: string }
  /** setPolicy writes a policy file and sets it */
  setPolicy: (text: string, message: string) => Promise<void>
}

/** createSubnetLab builds the lab with `policy` in force before the nodes join. */
export async function createSubnetLab (t: TestWithResult, policy: (lab: { lanHost: string, lan: string }) => string, opts: { routers?: 1 | 2, controllerArgs?: string[], router2Tag?: string } = {}): Promise<SubnetLab> {
  const topology = await createTopology(t, { hosts: ['ctl', 'client'] })
  const routerHost = await topology.addHost('router', { networks: ['backbone', 'lan'] })
  if (opts.routers === 2) await topology.addHost('router2', { networks: ['backbone', 'lan'] })
  const lanHost = await topology.addHost('printer', { networks: ['lan'] })
  const lan = topology.networks.find(n => n.name === 'lan')!.subnet
  const routerLan = routerHost.interfaces.find(i => i.network === 'lan')!
  const mesh = await createMesh(t, { hosts: [], lab: { topology, controller: topology.host('ctl') }, ...(opts.controllerArgs !== undefined ? { controllerArgs: opts.controllerArgs } : {}) })
  const setPolicy = async (text: string, message: string): Promise<void> => {
    const file = join(mesh.dir, `policy-${Date.now()}.hujson`)
    writeFileSync(file, text)
    await mesh.admin('policy', 'set', file, '-m', message)
  }
  await mesh.admin('users', 'create', 'alice', '--email', 'alice@example.com')
  await setPolicy(policy({ lanHost: lanHost.address, lan }), 'subnet lab')
  const key = async (...extra: string[]): Promise<string> =>
    JSON.parse(await mesh.admin('keys', 'create', '--user', 'alice', '--reusable', '--preapproved', ...extra, '--json')).key as string
  const router = await mesh.join('router', { authKey: await key('--tags', 'tag:router') })
  const router2 = opts.routers === 2 ? await mesh.join('router2', { authKey: await key('--tags', opts.router2Tag ?? 'tag:router') }) : undefined
  const client = await mesh.join('client', { authKey: await key() })
  return { mesh, router, client, ...(router2 !== undefined ? { router2 } : {}), lanHost, lan, routerLan: { name: routerLan.name, address: routerLan.address }, setPolicy }
}
