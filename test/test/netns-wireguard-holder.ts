/**
 * netns-wireguard-holder brings up a WireGuard interface through the real adapter from
 * a separate process, prints `ready`, and waits to be killed: the fail-closed test kills
 * it with SIGKILL and checks that the interface and its peers outlive it. The config
 * comes in WARREN_TEST_WG_CONFIG (JSON), so no key is in argv.
 */
import { createCommandRunner, createWireGuard, type WireGuardConfig } from '@warren/node'

const config = JSON.parse(process.env.WARREN_TEST_WG_CONFIG ?? '{}') as WireGuardConfig
const wg = createWireGuard({ runner: createCommandRunner(), interfaceName: config.interfaceName, mode: 'auto' })
const backend = await wg.up()
await wg.set(config)
console.log(`ready ${backend}`)
setInterval(() => undefined, 60_000)
