import { WarrenError } from '@warren/protocol'
import type { DataPlane } from './data-plane.js'
import type { DataPlaneContext } from './daemon.js'

/** createSystemDataPlane builds the real data plane from the engine and its adapters. */
export async function createSystemDataPlane (_ctx: DataPlaneContext): Promise<DataPlane> {
  throw new WarrenError('not_implemented', 'the system data plane is not wired yet', { status: 500 })
}
