import { WarrenError, isWireGuardKey } from '@warren/protocol'
import { normalizeCidr, checkInterfaceName } from '../router/cidr.js'
import type { WireGuardConfig, WireGuardPeerConfig, WireGuardStatus, WireGuardChanges } from './types.js'

/** WireGuardDevice is the full state of an interface as `wg show IF dump` prints it. */
export interface WireGuardDevice extends WireGuardStatus {
  /** kept only to compare with the desired key; never logged or returned by status() */
  privateKey?: string
}

/** parseWireGuardDump reads `wg show IF dump`: one interface line, then one line per peer. */
export function parseWireGuardDump (interfaceName: string, text: string): WireGuardDevice {
  const lines = text.split('\n').filter(l => l.trim() !== '')
  const head = (lines[0] ?? '').split('\t')
  const none = (s: string | undefined): string | undefined => s === undefined || s === '(none)' ? undefined : s
  const device: WireGuardDevice = {
    interfaceName,
    privateKey: none(head[0]),
    publicKey: none(head[1]),
    listenPort: Number(head[2] ?? 0) || 0,
    peers: []
  }
  for (const line of lines.slice(1)) {
    const f = line.split('\t')
    const handshake = Number(f[4] ?? 0)
    device.peers.push({
      publicKey: f[0]!,
      endpoint: none(f[2]),
      allowedIps: none(f[3]) === undefined ? [] : f[3]!.split(',').filter(s => s !== ''),
      latestHandshake: handshake > 0 ? new Date(handshake * 1000) : undefined,
      rxBytes: Number(f[5] ?? 0),
      txBytes: Number(f[6] ?? 0),
      persistentKeepalive: f[7] === undefined || f[7] === 'off' ? 0 : Number(f[7])
    })
  }
  return device
}

/** withoutPrivateKey turns a device into a status that is safe to show and log. */
export function withoutPrivateKey (d: WireGuardDevice): WireGuardStatus {
  const { privateKey: _secret, ...status } = d
  return status
}

const ENDPOINT = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/

/**
 * checkWireGuardConfig validates a desired config and returns it normalized (allowed IPs
 * in canonical form, sorted), or throws a WarrenError that names the bad field.
 */
export function checkWireGuardConfig (c: WireGuardConfig): WireGuardConfig {
  const bad = (field: string, msg: string): never => { throw new WarrenError('bad_config', `WireGuard config: ${msg}`, { field }) }
  checkInterfaceName(c.interfaceName)
  if (!isWireGuardKey(c.privateKey)) bad('privateKey', 'the private key is not a 32-byte key in base64 (as `wg genkey` prints)')
  if (c.listenPort !== undefined && (!Number.isInteger(c.listenPort) || c.listenPort < 0 || c.listenPort > 65535)) {
    bad('listenPort', `listen port ${String(c.listenPort)} is not a port number (0-65535)`)
  }
  if (!Array.isArray(c.peers)) bad('peers', 'peers must be a list')
  const seen = new Set<string>()
  const peers = c.peers.map((p, i): WireGuardPeerConfig => {
    const at = `peers[${i}]`
    if (!isWireGuardKey(p.publicKey)) bad(`${at}.publicKey`, `${at} public key '${String(p.publicKey)}' is not a 32-byte key in base64`)
    if (seen.has(p.publicKey)) bad(`${at}.publicKey`, `${at} repeats public key ${p.publicKey}: each peer may appear once`)
    seen.add(p.publicKey)
    if (p.endpoint !== undefined) {
      const m = ENDPOINT.exec(p.endpoint)
      if (m === null || Number(m[2]) < 1 || Number(m[2]) > 65535) bad(`${at}.endpoint`, `${at} endpoint '${p.endpoint}' is not host:port or [v6]:port`)
    }
    const ka = p.persistentKeepalive ?? 0
    if (!Number.isInteger(ka) || ka < 0 || ka > 65535) bad(`${at}.persistentKeepalive`, `${at} keepalive ${String(ka)} is not 0-65535 seconds`)
    const allowedIps = [...new Set((p.allowedIps ?? []).map((a, j) => normalizeCidr(a, `${at}.allowedIps[${j}]`)))].sort()
    return { publicKey: p.publicKey, allowedIps, ...(p.endpoint !== undefined ? { endpoint: p.endpoint } : {}), ...(p.endpointPinned === true ? { endpointPinned: true } : {}), persistentKeepalive: ka }
  })
  return { ...c, peers }
}

/** WireGuardPlan is the minimal set of changes that takes a device to the desired state. */
export interface WireGuardPlan {
  privateKey?: string
  listenPort?: number
  remove: string[]
  /** peers to add or update, each with only the attributes that must change */
  upsert: Array<{ publicKey: string, isNew: boolean, allowedIps?: string[], endpoint?: string, persistentKeepalive?: number }>
}

/**
 * planWireGuard compares current and (checked) desired state. `lastEndpoints` holds the
 * endpoint Warren last set per peer: a peer that roamed since keeps its learned endpoint
 * until the desired one changes, so an unchanged map never resets a working path; a
 * pinned endpoint (a path Warren confirmed) is set again whenever WireGuard left it.
 */
export function planWireGuard (current: WireGuardDevice, desired: WireGuardConfig, lastEndpoints: ReadonlyMap<string, string>): WireGuardPlan {
  const plan: WireGuardPlan = { remove: [], upsert: [] }
  if (current.privateKey !== desired.privateKey) plan.privateKey = desired.privateKey
  if (desired.listenPort !== undefined && desired.listenPort !== 0 && current.listenPort !== desired.listenPort) plan.listenPort = desired.listenPort
  const want = new Map(desired.peers.map(p => [p.publicKey, p]))
  const have = new Map(current.peers.map(p => [p.publicKey, p]))
  for (const key of have.keys()) if (!want.has(key)) plan.remove.push(key)
  for (const p of desired.peers) {
    const cur = have.get(p.publicKey)
    const ka = p.persistentKeepalive ?? 0
    if (cur === undefined) {
      plan.upsert.push({ publicKey: p.publicKey, isNew: true, allowedIps: p.allowedIps, ...(p.endpoint !== undefined ? { endpoint: p.endpoint } : {}), ...(ka > 0 ? { persistentKeepalive: ka } : {}) })
      continue
    }
    const change: WireGuardPlan['upsert'][number] = { publicKey: p.publicKey, isNew: false }
    const curIps = cur.allowedIps.map(a => normalizeCidr(a)).sort()
    if (curIps.join(',') !== p.allowedIps.join(',')) change.allowedIps = p.allowedIps
    if (p.endpoint !== undefined && p.endpoint !== cur.endpoint && (p.endpointPinned === true || p.endpoint !== lastEndpoints.get(p.publicKey))) change.endpoint = p.endpoint
    if (ka !== cur.persistentKeepalive) change.persistentKeepalive = ka
    if (Object.keys(change).length > 2) plan.upsert.push(change)
  }
  return plan
}

/** planChanges summarizes a plan for callers and metrics. */
export function planChanges (plan: WireGuardPlan): WireGuardChanges {
  return {
    interface: plan.privateKey !== undefined || plan.listenPort !== undefined,
    added: plan.upsert.filter(u => u.isNew).map(u => u.publicKey),
    updated: plan.upsert.filter(u => !u.isNew).map(u => u.publicKey),
    removed: [...plan.remove]
  }
}

/** PEERS_PER_COMMAND bounds one `wg set` argv; each peer still gets its own clause. */
const PEERS_PER_COMMAND = 64

/** PRIVATE_KEY_FILE stands in argv for the path of the file that holds the private key. */
export const PRIVATE_KEY_FILE = '<private-key-file>'

/**
 * wgSetCommands turns a plan into `wg set` argvs. Each peer is its own `peer KEY ...`
 * clause, so peers not named are never touched. The private key is never in argv:
 * PRIVATE_KEY_FILE marks where the caller puts the path of a 0600 file holding it.
 */
export function wgSetCommands (interfaceName: string, plan: WireGuardPlan): string[][] {
  const cmds: string[][] = []
  if (plan.privateKey !== undefined || plan.listenPort !== undefined) {
    const argv = ['wg', 'set', interfaceName]
    if (plan.listenPort !== undefined) argv.push('listen-port', String(plan.listenPort))
    if (plan.privateKey !== undefined) argv.push('private-key', PRIVATE_KEY_FILE)
    cmds.push(argv)
  }
  const clauses: string[][] = [
    ...plan.remove.map(k => ['peer', k, 'remove']),
    ...plan.upsert.map(u => {
      const c = ['peer', u.publicKey]
      if (u.allowedIps !== undefined) c.push('allowed-ips', u.allowedIps.join(','))
      if (u.endpoint !== undefined) c.push('endpoint', u.endpoint)
      if (u.persistentKeepalive !== undefined) c.push('persistent-keepalive', u.persistentKeepalive === 0 ? 'off' : String(u.persistentKeepalive))
      return c
    })
  ]
  for (let i = 0; i < clauses.length; i += PEERS_PER_COMMAND) {
    cmds.push(['wg', 'set', interfaceName, ...clauses.slice(i, i + PEERS_PER_COMMAND).flat()])
  }
  return cmds
}
