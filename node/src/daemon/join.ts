import os from 'node:os'
import {
  WarrenError, isWarrenError, parseCredential, normalizeFingerprint, isTag, checkRoutes, isExitRoute, offersExitNode, EXIT_ROUTES,
  type Node, type LocalUpRequest, type RoutingPrefs, type Peer
} from '@warren/protocol'
import { normalizeControllerUrl } from '@warren/sdk/transport'
import { registerNode, type Registration } from '../control/register.js'
import { exitPeer } from '../engine/exit-node.js'
import { startLogin, type PendingLogin } from '../control/login.js'
import type { RegisterInit } from '../control/register.js'
import type { DaemonContext, MeshTransport } from './daemon-context.js'

/** JoinTarget is the controller `up` joins and the settings to save once joined. */
export interface JoinTarget {
  controller: string
  fingerprint: string | undefined
  hostname: string
  advertiseTags: string[]
  routing: RoutingPrefs
  /** same: the node was already logged in to this controller */
  same: boolean
}

/** Joined is what `up` learned from registering: the node record, or a login the user must finish first. */
export type Joined = JoinTarget & ({ node: Node, login?: undefined } | { login: PendingLogin, node?: undefined })

/** NEEDS_LOGIN_CODES are refusals of a machine-key login that a login at the identity provider fixes. */
const NEEDS_LOGIN_CODES = new Set(['node_key_expired', 'not_registered'])

/**
 * joinController registers with the controller `up` names: with the machine key when
 * already known there (falling back to the auth key if refused), else with the auth key.
 * Without an auth key, a node the controller does not know (or whose key expired) gets
 * a login at the controller's identity provider instead, for the user to finish.
 */
export async function joinController (d: DaemonContext, req: LocalUpRequest): Promise<Joined> {
  const { login, log } = d
  for (const tag of req.advertiseTags ?? []) {
    if (!isTag(tag)) throw new WarrenError('bad_tag', `'${tag}' is not a tag: tags look like tag:name`, { field: 'advertiseTags' })
  }
  const url = normalizeControllerUrl(req.controller)
  const controller = url.origin + url.pathname.replace(/\/+$/, '')
  let fingerprint = req.fingerprint !== undefined ? normalizeFingerprint(req.fingerprint) : undefined
  if (req.authKey !== undefined) {
    const pin = parseCredential(req.authKey, 'auth').fingerprint
    if (fingerprint !== undefined && pin !== undefined && pin !== fingerprint) {
      throw new WarrenError('fingerprint_conflict', 'the auth key pins a different controller certificate than --fingerprint; use the key printed by this controller, or drop --fingerprint', { field: 'fingerprint' })
    }
    fingerprint ??= pin
  }
  const same = login !== undefined && login.controller === controller
  if (same) fingerprint ??= login!.fingerprint
  const hostname = req.hostname ?? (same ? login!.hostname : os.hostname())
  const advertiseTags = req.advertiseTags ?? (same ? login!.advertiseTags : [])
  const routing = routingPrefs(req, same ? login!.routing : undefined, same ? login!.node.ipv6 : undefined)
  if (same && req.exitNode !== undefined && d.netmap !== undefined) checkExitNode(routing, d.netmap.peers)

  const t = d.makeTransport({ url: controller, ...(fingerprint !== undefined ? { fingerprint } : {}) })
  const base = { machineKey: d.keys.machine, wireguardPrivateKey: d.keys.wireguard.privateKey, hostname, requestTags: advertiseTags }
  const target: JoinTarget = { controller, fingerprint, hostname, advertiseTags, routing, same }
  let reg: Registration
  try {
    if (same) {
      try {
        reg = await registerNode(t, base)
      } catch (e) {
        if (!isWarrenError(e) || e.status < 400 || e.status >= 500) throw e
        if (req.authKey === undefined) {
          if (!NEEDS_LOGIN_CODES.has(e.code)) throw e
          log.info({ code: e.code }, 'log-in with the machine key was refused; asking the user to log in')
          return { ...target, login: await requestLogin(t, base, controller) }
        }
        log.info({ code: e.code }, 'log-in with the machine key was refused; joining with the auth key')
        reg = await registerNode(t, { ...base, authKey: req.authKey })
      }
    } else if (req.authKey === undefined) {
      return { ...target, login: await requestLogin(t, base, controller) }
    } else {
      reg = await registerNode(t, { ...base, authKey: req.authKey })
    }
  } catch (e) {
    d.metrics.errors.labels('register').inc()
    log.warn({ code: (e as WarrenError).code, err: (e as Error).message }, 'joining the controller failed')
    throw e
  } finally { t.close() }

  log.info({ node: reg.node.name, id: reg.node.id, status: reg.node.status, controller }, 'registered with the controller')
  return { ...target, node: reg.node }
}

/**
 * requestLogin starts a login at the controller's identity provider, for a node that joins
 * without an auth key. A controller without one says so in words, and how to join instead.
 */
async function requestLogin (t: MeshTransport, base: Omit<RegisterInit, 'authKey'>, controller: string): Promise<PendingLogin> {
  if ((base.requestTags ?? []).length > 0) {
    throw new WarrenError('needs_auth_key', 'a node with tags joins with an auth key: pass --auth-key KEY (from \'warren admin keys create --tags ...\'), or drop --advertise-tags to log in as yourself', { status: 400, field: 'authKey' })
  }
  try {
    return await startLogin(t, base)
  } catch (e) {
    // A controller without a login (or from before logins) has no such route.
    if (isWarrenError(e) && e.status === 404) {
      throw new WarrenError('needs_auth_key', `this node has not joined the controller at ${controller} yet, and it offers no login: pass --auth-key KEY (from 'warren admin keys create' on the controller)`, { status: 400, field: 'authKey' })
    }
    throw e
  }
}

/**
 * routingPrefs are the route settings of an `up`: what it says, else what the last `up`
 * said, else the defaults (no routes, accept none, masquerade forwarded traffic). Routes
 * are checked before anything is registered, so a bad one changes nothing.
 */
export function routingPrefs (req: LocalUpRequest, previous: RoutingPrefs | undefined, meshIpv6: string | undefined): RoutingPrefs {
  return {
    advertiseRoutes: checkRoutes(withExitRoutes(req.advertiseRoutes ?? previous?.advertiseRoutes ?? [], req.advertiseExitNode), 'advertiseRoutes', meshIpv6),
    acceptRoutes: req.acceptRoutes ?? previous?.acceptRoutes ?? false,
    snatSubnetRoutes: req.snatSubnetRoutes ?? previous?.snatSubnetRoutes ?? true,
    ...exitPrefs(req, previous)
  }
}

/** withExitRoutes adds both default routes for --advertise-exit-node, removes them for false, else keeps the list. */
function withExitRoutes (routes: readonly string[], advertiseExitNode: boolean | undefined): string[] {
  if (advertiseExitNode === undefined) return [...routes]
  const subnets = routes.filter(r => !isExitRoute(r))
  return advertiseExitNode ? [...subnets, ...EXIT_ROUTES] : subnets
}

/**
 * checkExitNode refuses, before anything changes, an exit node that no peer of the map
 * this node has offers, naming those that do.
 */
export function checkExitNode (routing: RoutingPrefs, peers: readonly Peer[]): void {
  if (routing.exitNode === undefined || exitPeer(peers, routing) !== undefined) return
  const offering = peers.filter(p => offersExitNode(p.routes ?? [])).map(p => p.name).sort()
  throw new WarrenError('bad_exit_node', `no peer named "${routing.exitNode}" offers an exit node: ` +
    (offering.length > 0 ? `use one of ${offering.join(', ')}` : 'none does yet (an exit node needs \'warren up --advertise-exit-node\' and approval)'), { status: 400, field: 'exitNode' })
}

/** exitPrefs: the exit node an `up` names ("" stops using one), else the last one; allow-LAN-access follows it. */
function exitPrefs (req: LocalUpRequest, previous: RoutingPrefs | undefined): Pick<RoutingPrefs, 'exitNode' | 'exitNodeAllowLanAccess'> {
  const exitNode = (req.exitNode ?? previous?.exitNode ?? '').trim()
  if (exitNode === '') return {}
  return { exitNode, exitNodeAllowLanAccess: req.exitNodeAllowLanAccess ?? previous?.exitNodeAllowLanAccess ?? false }
}
