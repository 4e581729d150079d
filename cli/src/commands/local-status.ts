import type { Command } from 'commander'
import { describeDataPlane, isExitRoute, offersExitNode, type LocalStatus, type LocalPeerPath } from '@warren/protocol'
import { openLocal, checkVersion, localCommand, type LocalOptions } from './local-common.js'
import { printJson, formatTable, relativeTime } from '../output.js'
import { cliIo } from '../cli-io.js'

/** formatBytes shows a byte count in the largest binary unit that keeps it readable. */
export function formatBytes (n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  let v = n
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++ }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`
}

/** formatPath shows how WireGuard reaches a peer: `direct 12 ms`, `udp-relay r1 30 ms`, or `-` (none chosen). */
export function formatPath (path: LocalPeerPath | undefined): string {
  if (path === undefined) return '-'
  return [path.kind, path.relay, path.latencyMs !== undefined ? `${path.latencyMs.toFixed(path.latencyMs < 10 ? 1 : 0)} ms` : undefined].filter(x => x !== undefined).join(' ')
}

/**
 * formatRoutes says what this node does with subnet routes: those it advertises (served
 * once approved) and those peers offer (primary or standby router; in use, or why not).
 */
export function formatRoutes (st: LocalStatus): string[] {
  const lines: string[] = formatExitNode(st)
  const advertised = (st.self?.advertisedRoutes ?? []).filter(r => !isExitRoute(r))
  if (advertised.length > 0) {
    const approved = new Set(st.self?.approvedRoutes ?? [])
    const primary = new Set(st.self?.primaryRoutes ?? [])
    const role = (r: string): string => primary.has(r) ? ', primary' : ', standby'
    const state = (r: string): string => approved.has(r) ? `approved, served${role(r)}` : 'awaiting approval'
    lines.push(`routes advertised: ${advertised.map(r => `${r} (${state(r)})`).join(', ')}; ${st.routing?.snatSubnetRoutes === false ? 'no masquerade' : 'masqueraded'}`)
  }
  const accept = st.routing?.acceptRoutes === true
  for (const p of st.peers) {
    for (const r of (p.routes ?? []).filter(r => !isExitRoute(r))) {
      const used = p.routesInUse?.includes(r) === true
      const role = p.primaryRoutes?.includes(r) === true ? 'primary' : p.online ? 'standby' : 'offline'
      lines.push(`route ${r} via ${p.name} (${role}): ${used ? 'in use' : accept ? 'not used (another router carries it)' : 'not used (run \'warren up --accept-routes\' to use it)'}`)
    }
  }
  return lines
}

/**
 * formatExitNode says whether this node offers an exit node (and whether it is approved),
 * which peers offer one, and which one this node uses.
 */
export function formatExitNode (st: LocalStatus): string[] {
  const lines: string[] = []
  if (offersExitNode(st.self?.advertisedRoutes ?? [])) {
    lines.push(offersExitNode(st.self?.approvedRoutes ?? [])
      ? 'offers exit node (approved, in service)'
      : `offers exit node (awaiting approval: warren admin nodes approve-routes ${st.self!.name} 0.0.0.0/0 ::/0)`)
  }
  const offering = st.peers.filter(p => offersExitNode(p.routes ?? []))
  const used = offering.find(p => offersExitNode(p.routesInUse ?? []))
  if (used !== undefined) lines.push(`exit node: ${used.name} (in use${st.routing?.exitNodeAllowLanAccess === true ? ', LAN stays local' : ''})`)
  else if (st.routing?.exitNode !== undefined) lines.push(`exit node: ${st.routing.exitNode} (not available: no peer by that name offers an exit node; internet traffic goes out directly)`)
  for (const p of offering) if (p !== used) lines.push(`exit node available: ${p.name} (use it with 'warren up --exit-node ${p.name}')`)
  return lines
}

/** formatStatus is the human form of `warren status`. */
export function formatStatus (st: LocalStatus, now = Date.now()): string {
  const lines: string[] = []
  const self = st.self
  lines.push(`state: ${st.backendState}${st.controller !== undefined ? `, controller ${st.controller.url} (${st.controller.connected ? 'connected' : 'not connected'})` : ''}`)
  if (st.authUrl !== undefined) lines.push(`log in at: ${st.authUrl}`)
  if (self !== undefined) lines.push(`self: ${self.fqdn} ${self.ipv4} ${self.ipv6} on ${st.interfaceName}`)
  // A node that needs a login has health lines that say why; its last known expiry would mislead.
  if (self?.keyExpiry !== undefined && st.backendState !== 'NeedsLogin') lines.push(`key: expires ${relativeTime(self.keyExpiry, now)}`)
  if (st.dataPlane !== undefined) lines.push(`wireguard: ${describeDataPlane(st.dataPlane)}`)
  for (const h of st.health) lines.push(`health: ${h}`)
  lines.push(...formatRoutes(st))
  if (st.peers.length === 0) {
    lines.push(self === undefined ? 'not joined: run \'warren up --controller URL\' (with --auth-key KEY where the controller has no SSO login)' : 'no peers')
    return lines.join('\n') + '\n'
  }
  lines.push('')
  return lines.join('\n') + '\n' + formatTable(st.peers, [
    { header: 'name', value: p => p.name },
    { header: 'ipv4', value: p => p.ipv4 },
    { header: 'online', value: p => p.online ? 'yes' : 'no' },
    { header: 'handshake', value: p => relativeTime(p.lastHandshake, now) },
    { header: 'path', value: p => formatPath(p.path) },
    { header: 'endpoint', value: p => p.endpoint ?? p.path?.endpoint ?? '-' },
    { header: 'rx', value: p => formatBytes(p.rxBytes) },
    { header: 'tx', value: p => formatBytes(p.txBytes) },
    { header: 'owner', value: p => p.tags.length > 0 ? p.tags.join(',') : p.user ?? '-' }
  ])
}

/** register adds `warren status`: this node, its peers, handshakes and traffic. */
export function register (program: Command): void {
  localCommand(program, 'status', 'show this node, its peers, their path (direct or relayed), last handshake, endpoint and traffic')
    .option('--json', 'print JSON for scripts')
    .action(async (opts: LocalOptions) => {
      const st = checkVersion(await openLocal(opts).status())
      if (opts.json === true) printJson(st)
      else cliIo().stdout.write(formatStatus(st))
    })
}
