import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  generateMachineKeyPair, generateWireGuardKeyPair, LOGIN_START_PATH, LOGIN_CALLBACK_PATH,
  type MachineKeyPair, type RegisterRequest
} from '@warren/protocol'
import { startController, type RunningController, type OidcOptions } from '@warren/controller'
import { signedRegistration } from '@warren/node'
import { createControllerTransport } from '@warren/sdk'
import { startTestIdp, type TestIdp } from './oidc-idp.js'
import type { TestLike } from './netns.js'

// Logins at an OpenID provider, through the controller's routes: a real provider
// (oidc-provider) on loopback, the node's own signed login requests over HTTPS, and the
// browser's part driven by an HTTP client that fills in the provider's pages.

export interface Setup { idp: TestIdp, ctl: RunningController }

/**
 * setup runs a test provider with alice, bob and carol, and a controller that logs in
 * there; `withMap` runs its map service too (the policy engine that gives nodes their filters).
 */
export async function setup (t: TestLike, oidc: Partial<OidcOptions> = {}, idp?: TestIdp, withMap = false): Promise<Setup> {
  if (idp === undefined) {
    idp = await startTestIdp()
    t.teardown(idp.close)
    idp.users.set('alice', { email: 'alice@example.com', name: 'Alice Liddell', groups: ['engineering'] })
    idp.users.set('bob', { email: 'bob@other.org', name: 'Bob', groups: ['sales'] })
    idp.users.set('carol', { email: 'carol@example.com', emailVerified: false, groups: [] })
  }
  const stateDir = mkdtempSync(join(tmpdir(), 'warren-oidc-'))
  t.teardown(() => { rmSync(stateDir, { recursive: true, force: true }) })
  const ctl = await startController({
    stateDir,
    listen: '127.0.0.1:0',
    logger: false,
    rateLimit: false,
    ...(withMap ? {} : { map: false as const }),
    oidc: { issuer: idp.issuer, clientId: idp.clientId, clientSecret: idp.clientSecret, scopes: ['openid', 'email', 'profile', 'groups'], ...oidc }
  })
  t.teardown(ctl.close)
  idp.allow(`${ctl.url}${LOGIN_CALLBACK_PATH}`)
  return { idp, ctl }
}

export interface TestMachine { machine: MachineKeyPair, wgPrivateKey: string }
export interface Started { loginUrl: string, waitToken: string, m: TestMachine }

export const newMachine = (): TestMachine => ({ machine: generateMachineKeyPair(), wgPrivateKey: generateWireGuardKeyPair().privateKey })

/** signedLogin is what a node sends to start a login: its registration, signed, without an auth key. */
export async function signedLogin (ctl: RunningController, hostname: string, m = newMachine(), authKey?: string): Promise<RegisterRequest> {
  const transport = createControllerTransport({ url: ctl.url, fingerprint: ctl.fingerprint })
  try {
    return (await signedRegistration(transport, { machineKey: m.machine, wireguardPrivateKey: m.wgPrivateKey, hostname, ...(authKey !== undefined ? { authKey } : {}) })).req
  } finally { transport.close() }
}

/** call injects a JSON request into the controller's public app. */
export async function call (ctl: RunningController, url: string, payload: unknown): Promise<{ status: number, body: any }> {
  const res = await ctl.app.inject({ method: 'POST', url, payload: payload as object })
  return { status: res.statusCode, body: JSON.parse(res.body) }
}

export async function startLogin (ctl: RunningController, hostname = 'laptop', m = newMachine()): Promise<Started> {
  const r = await call(ctl, LOGIN_START_PATH, await signedLogin(ctl, hostname, m))
  if (r.status !== 200) throw new Error(`login start failed: ${JSON.stringify(r.body)}`)
  return { ...r.body, m }
}

/** text is the words of a controller page, with HTML escapes undone. */
export const text = (html: string): string => html.replace(/&#(\d+);/g, (_m, c: string) => String.fromCharCode(Number(c)))

/** openLink opens the login URL as a browser would: it must redirect to the provider. */
export async function openLink (ctl: RunningController, loginUrl: string): Promise<{ status: number, location?: string, body: string }> {
  const res = await ctl.app.inject({ method: 'GET', url: new URL(loginUrl).pathname })
  return { status: res.statusCode, ...(typeof res.headers.location === 'string' ? { location: res.headers.location } : {}), body: text(res.body) }
}

/** callback delivers the provider's redirect to the controller, as the browser would. */
export async function callback (ctl: RunningController, url: URL): Promise<{ status: number, body: string }> {
  const res = await ctl.app.inject({ method: 'GET', url: url.pathname + url.search })
  return { status: res.statusCode, body: text(res.body) }
}

/** login runs the whole browser side: open the link, log in at the provider, come back. */
export async function login (s: Setup, started: Started, user: string): Promise<{ status: number, body: string, back: URL }> {
  const link = await openLink(s.ctl, started.loginUrl)
  if (link.status !== 302 || link.location === undefined) throw new Error(`login link answered ${link.status}: ${link.body}`)
  const back = await s.idp.browse(link.location, user)
  return { ...await callback(s.ctl, back), back }
}

export const lastAudit = (ctl: RunningController, action: string) => ctl.state.listAudit({ limit: 1000 }).filter(e => e.action === action).at(-1)

