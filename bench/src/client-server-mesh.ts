/** A two-node mesh for benchmarks: a client node A and a server node B under one policy. */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createMesh, type Mesh, type MeshNode, type TestWithResult } from '@warren/test'

/** ClientServerMesh is the mesh, its nodes, and the auth key each joined with. */
export interface ClientServerMesh {
  mesh: Mesh
  /** a is tagged `tag:client`, b `tag:server` */
  a: MeshNode
  b: MeshNode
  clientKey: string
  serverKey: string
}

/**
 * createClientServerMesh starts a real controller with `policy` (which may name `tag:client`
 * and `tag:server`, both owned by user `bench`) and joins B, then A, as real daemons.
 */
export async function createClientServerMesh (t: TestWithResult, policy: string, message: string): Promise<ClientServerMesh> {
  const mesh = await createMesh(t, { hosts: ['a', 'b'] })
  await mesh.admin('users', 'create', 'bench')
  const policyFile = join(mesh.dir, 'policy.hujson')
  writeFileSync(policyFile, policy)
  await mesh.admin('policy', 'set', policyFile, '-m', message)
  const key = async (tag: string): Promise<string> =>
    (JSON.parse(await mesh.admin('keys', 'create', '--user', 'bench', '--reusable', '--preapproved', '--tags', tag, '--json')) as { key: string }).key
  const serverKey = await key('tag:server')
  const clientKey = await key('tag:client')
  const b = await mesh.join('b', { authKey: serverKey })
  const a = await mesh.join('a', { authKey: clientKey })
  return { mesh, a, b, clientKey, serverKey }
}
