import { join } from 'node:path'
import { startUdpRelay, loadOrCreateRelayKey, type UdpRelay, type PortRange, type RelayFirewall, type Sysctls, type RelayLogger } from '@warren/relay'
import type { RelayBackend } from './relay-broker.js'

/** EMBEDDED_RELAY_ID names the controller's own relay in maps and grants. */
export const EMBEDDED_RELAY_ID = 'controller'
/** DEFAULT_RELAY_PORT is the embedded relay's UDP control port (the controller's STUN is 3478). */
export const DEFAULT_RELAY_PORT = 3480

/** EmbeddedRelayOptions configure the kernel relay the controller runs in its own process. */
export interface EmbeddedRelayOptions {
  /** the host (name or address) nodes reach the relay at */
  publicHost: string
  /** the IPv6 address nodes reach it at too: a dual-stack relay (listens on `::`) */
  publicHost6?: string
  /** UDP control port (STUN); default 3480, 0 picks one */
  port?: number
  /** address to bind; default 0.0.0.0, or :: (IPv4 and IPv6) with publicHost6 or an IPv6 publicHost */
  listenHost?: string
  /** ports for allocations; default 40000-40999 */
  portRange?: PortRange
  /** how long a grant lasts unless renewed (default 10 min) */
  grantTtlMs?: number
  /** optional: when the relay cannot start, the controller logs why and runs without it */
  optional?: boolean
  /** seams for tests */
  firewall?: RelayFirewall
  sysctls?: Sysctls | false
}

/** startEmbeddedRelay starts the relay with its key in the controller's state dir (relay.key, 0600). */
export async function startEmbeddedRelay (stateDir: string, opts: EmbeddedRelayOptions, log?: RelayLogger): Promise<UdpRelay> {
  return await startUdpRelay({
    key: await loadOrCreateRelayKey(join(stateDir, 'relay.key')),
    port: opts.port ?? DEFAULT_RELAY_PORT,
    publicHost: opts.publicHost,
    ...(opts.publicHost6 !== undefined ? { publicHost6: opts.publicHost6 } : {}),
    ...(opts.listenHost !== undefined ? { listenHost: opts.listenHost } : {}),
    ...(opts.portRange !== undefined ? { portRange: opts.portRange } : {}),
    ...(opts.firewall !== undefined ? { firewall: opts.firewall } : {}),
    ...(opts.sysctls !== undefined ? { sysctls: opts.sysctls } : {}),
    ...(log !== undefined ? { log } : {})
  })
}

/** embeddedRelayBackend lets the broker drive a relay in this process directly. */
export function embeddedRelayBackend (relay: UdpRelay, id = EMBEDDED_RELAY_ID): RelayBackend {
  return {
    info: { id, udp: relay.endpoint, ...(relay.endpoint6 !== undefined ? { udp6: relay.endpoint6 } : {}), key: relay.publicKey },
    allocate: async req => await relay.allocate(req),
    renew: (aid, expiresAt) => relay.renew(aid, expiresAt),
    release: async aid => { await relay.release(aid) },
    endpointOf: (port, family) => relay.endpointOf(port, family)
  }
}
