import { Option, type Command } from 'commander'
import { WarrenError, checkRoutes, parseDuration, type LocalStatus, type LocalUpRequest } from '@warren/protocol'
import { openLocal, checkVersion, localCommand, type LocalOptions } from './local-common.js'
import { printJson, printLine } from '../output.js'
import { cliIo } from '../cli-io.js'

interface UpOptions extends LocalOptions {
  controller?: string
  authKey?: string
  hostname?: string
  advertiseTags?: string
  fingerprint?: string
  advertiseRoutes?: string
  acceptRoutes?: boolean
  snatSubnetRoutes?: string
  advertiseExitNode?: boolean
  exitNode?: string
  exitNodeAllowLanAccess?: boolean
  timeout: string
}

/** readBoolean reads `--flag=true|false`, naming the flag when it is neither. */
function readBoolean (text: string, flag: string): boolean {
  if (text === 'true') return true
  if (text === 'false') return false
  throw new WarrenError('usage', `${flag} takes true or false, not "${text}"`, { field: flag })
}

/**
 * routeOptions are the route settings an `up` asks for; those not given keep what the last
 * `up` said. Routes are checked here, so a typo fails before the daemon is asked.
 */
export function routeOptions (opts: Pick<UpOptions, 'advertiseRoutes' | 'acceptRoutes' | 'snatSubnetRoutes' | 'advertiseExitNode' | 'exitNode' | 'exitNodeAllowLanAccess'>):
Pick<LocalUpRequest, 'advertiseRoutes' | 'acceptRoutes' | 'snatSubnetRoutes' | 'advertiseExitNode' | 'exitNode' | 'exitNodeAllowLanAccess'> {
  if (opts.exitNodeAllowLanAccess !== undefined && opts.exitNode === '') {
    throw new WarrenError('usage', '--exit-node-allow-lan-access needs an exit node: give --exit-node NAME too, or leave it out with --exit-node=', { field: '--exit-node-allow-lan-access' })
  }
  return {
    ...(opts.advertiseExitNode !== undefined ? { advertiseExitNode: opts.advertiseExitNode } : {}),
    ...(opts.exitNode !== undefined ? { exitNode: opts.exitNode.trim() } : {}),
    ...(opts.exitNodeAllowLanAccess !== undefined ? { exitNodeAllowLanAccess: opts.exitNodeAllowLanAccess } : {}),
    ...(opts.advertiseRoutes !== undefined ? { advertiseRoutes: checkRoutes(opts.advertiseRoutes.split(',').map(s => s.trim()).filter(s => s !== ''), '--advertise-routes') } : {}),
    ...(opts.acceptRoutes !== undefined ? { acceptRoutes: opts.acceptRoutes } : {}),
    ...(opts.snatSubnetRoutes !== undefined ? { snatSubnetRoutes: readBoolean(opts.snatSubnetRoutes, '--snat-subnet-routes') } : {})
  }
}

/** describeUp is the one line `warren up` prints once the daemon is running. */
function describeUp (st: LocalStatus): string {
  const self = st.self
  if (self === undefined) return 'up'
  return `up: ${self.fqdn} (${self.ipv4}, ${self.ipv6}), ${st.peers.length} peer${st.peers.length === 1 ? '' : 's'}`
}

/**
 * showLoginUrl prints where to log in, with a QR code for a phone when the output is a
 * terminal. The URL goes to stderr when --json keeps stdout for the final status.
 */
async function showLoginUrl (url: string, json: boolean): Promise<void> {
  const out = json ? cliIo().stderr : cliIo().stdout
  out.write(`To finish joining, log in at:\n\n    ${url}\n\n`)
  if ((out as { isTTY?: boolean }).isTTY === true) {
    const { default: qrcode } = await import('qrcode-terminal')
    await new Promise<void>(resolve => { qrcode.generate(url, { small: true }, code => { out.write(`${code}\n`); resolve() }) })
  }
  out.write('Waiting for the login (the link works once; Ctrl-C stops waiting)...\n')
}

/** register adds `warren up`: join the mesh (first time, with an auth key) or reconnect. */
export function register (program: Command): void {
  localCommand(program, 'up', 'join the mesh (with --auth-key, or by logging in at the controller\'s identity provider) or connect again, and wait until running')
    .option('--controller <url>', 'controller URL, https://HOST:PORT (default: the one joined before)')
    .addOption(new Option('--auth-key <key>', 'auth key from \'warren admin keys create\' (without one, a controller with SSO prints a login URL)').env('WARREN_AUTH_KEY'))
    .option('--hostname <name>', 'the name to register (default: this host\'s name)')
    .option('--advertise-tags <tags>', 'tags to request, comma-separated (for example tag:web,tag:prod)')
    .option('--fingerprint <sha256>', 'pin the controller certificate (default: the pin inside the auth key)')
    .option('--advertise-routes <cidrs>', 'offer to route these subnets for the mesh, comma-separated (192.168.1.0/24,fd00:1::/64); an empty string stops')
    .option('--accept-routes', 'use the subnet routes other nodes offer (default: off)')
    .option('--no-accept-routes', 'stop using them')
    .option('--snat-subnet-routes <bool>', 'masquerade what this node forwards into its subnets (default: true)')
    .option('--advertise-exit-node', 'offer this node as an exit node: the mesh may send its internet traffic through it, once approved')
    .option('--no-advertise-exit-node', 'stop offering it')
    .option('--exit-node <name|ip>', 'send internet traffic through this exit node (a peer\'s name or mesh address); an empty string stops')
    .option('--exit-node-allow-lan-access', 'with an exit node, keep reaching the directly connected LAN directly (default: off)')
    .option('--no-exit-node-allow-lan-access', 'send the LAN through the exit node too')
    .option('--timeout <duration>', 'how long to wait for the mesh to come up', '60s')
    .option('--json', 'print the final status as JSON')
    .action(async (opts: UpOptions) => {
      const timeoutMs = parseDuration(opts.timeout, '--timeout')
      let deadline = Date.now() + timeoutMs
      const routes = routeOptions(opts)
      const local = openLocal(opts, 60_000)
      let controller = opts.controller
      if (controller === undefined || controller === '') {
        controller = checkVersion(await local.status()).controller?.url
        if (controller === undefined) throw new WarrenError('usage', 'this node has not joined a mesh yet: pass --controller https://HOST:PORT (and --auth-key KEY where the controller has no SSO login)')
      }
      const req: LocalUpRequest = {
        controller,
        ...routes,
        ...(opts.authKey !== undefined && opts.authKey !== '' ? { authKey: opts.authKey } : {}),
        ...(opts.hostname !== undefined ? { hostname: opts.hostname } : {}),
        ...(opts.fingerprint !== undefined ? { fingerprint: opts.fingerprint } : {}),
        ...(opts.advertiseTags !== undefined ? { advertiseTags: opts.advertiseTags.split(',').map(s => s.trim()).filter(s => s !== '') } : {})
      }
      let st = checkVersion(await local.up(req))
      let shownUrl: string | undefined
      while (st.backendState !== 'Running' && st.backendState !== 'NeedsApproval') {
        // A pending login waits for the person, not for --timeout: the daemon ends it when the link expires.
        const loginPending = st.backendState === 'NeedsLogin' && st.authUrl !== undefined
        if (loginPending && st.authUrl !== shownUrl) {
          shownUrl = st.authUrl
          await showLoginUrl(st.authUrl!, opts.json === true)
        }
        if (loginPending) deadline = Date.now() + timeoutMs
        else if (st.backendState === 'NeedsLogin' || st.backendState === 'Stopped') {
          throw new WarrenError('up_failed', `the daemon is ${st.backendState}: ${st.health.join('; ') || 'no reason given'}`)
        }
        if (Date.now() > deadline) {
          throw new WarrenError('timeout', `the mesh did not come up within ${opts.timeout} (state ${st.backendState})${st.health.length > 0 ? `: ${st.health.join('; ')}` : ''}`)
        }
        await new Promise(resolve => setTimeout(resolve, 200))
        st = await local.status()
      }
      if (opts.json === true) printJson(st)
      else if (st.backendState === 'NeedsApproval') {
        printLine(`registered as ${st.self?.name ?? 'this node'}, but an admin must approve it first: on the controller run 'warren admin nodes approve ${st.self?.name ?? 'NAME'}'; the daemon connects as soon as that happens`)
      } else printLine(describeUp(st))
    })
}
