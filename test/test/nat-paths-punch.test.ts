/**
 * Path selection through two NATs with a real controller (STUN on) and daemons: each
 * learns its mapped address by STUN, the peers get it as a candidate, TTL-limited probes
 * open each side's own NAT before the full probes, and WireGuard goes direct.
 */
import t from 'tap'
import { createMesh, createNatLab, netnsSkipReason } from '../src/index.js'
import { joinPair, checkPathInUse, checkPolicy } from '../src/path-checks.js'

const skip = netnsSkipReason()

for (const nat of ['cone', 'full-cone'] as const) {
  t.test(`${nat} NAT on both sides: the daemons punch through (TTL-limited probes first) and go direct`, { skip, timeout: 580_000 }, async t => {
    const lab = await createNatLab(t, { sides: [{ name: 'x', nat }, { name: 'y', nat }] })
    const mesh = await createMesh(t, { hosts: [], lab })
    const [a, b] = await joinPair(mesh, ['x1', 'y1'])
    await checkPathInUse(t, mesh, a, b, lab.side('y').publicAddress)
    await checkPathInUse(t, mesh, b, a, lab.side('x').publicAddress)
    await checkPolicy(t, a, b)
  })
}
