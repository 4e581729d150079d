/**
 * @warren/test is the shared test harness: network-namespace topologies and process
 * runners, cleaned up at teardown even when a test fails.
 *
 * @example
 * ```ts
 * import t from 'tap'
 * import { createTopology, netnsSkipReason } from '@warren/test'
 * t.test('a reaches b', { skip: netnsSkipReason() }, async t => {
 *   const topo = await createTopology(t, { hosts: 2 })
 *   const [a, b] = topo.hosts
 *   await a.exec(['ping', '-c', '1', b.address])
 *   const server = b.spawn(['iperf3', '-s'])
 *   await server.waitForLine(/Server listening/, 5000)
 * })
 * ```
 */
export * from './process.js'
export * from './netns.js'
export * from './mesh.js'
export * from './teardown-scope.js'
export * from './nat-lab.js'
export * from './punch-tool.js'
export * from './relay-lab.js'
export * from './path-checks.js'
export * from './subnet-lab.js'
export * from './host-state.js'
export * from './router-failover.js'
