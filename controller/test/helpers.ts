import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request as httpRequest, type RequestOptions } from 'node:http'
import { request as httpsRequest } from 'node:https'
import type { Socket } from 'node:net'
import type { TLSSocket } from 'node:tls'
import type { FastifyInstance } from 'fastify'
import {
  generateMachineKeyPair, generateWireGuardKeyPair, signMessage, wireGuardProof, registerSigningPayload,
  REGISTER_DOMAIN, PROTOCOL_VERSION, type RegisterRequest, type MachineKeyPair, type WireGuardKeyPair
} from '@warren/protocol'
import { openStore, type Store } from '../src/store.js'
import { createControllerState, type ControllerState, type ControllerStateOptions } from '../src/state.js'
import { buildApp, type BuildAppOptions } from '../src/app.js'
import { createControllerMetrics } from '../src/metrics.js'

interface Teardown { teardown: (fn: () => unknown) => void }

/** tempDir makes a directory that is removed when the test ends. */
export async function tempDir (t: Teardown, prefix = 'warren-ctl-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  return dir
}

export interface TestController {
  dir: string
  store: Store
  state: ControllerState
  /** the TLS-side app (API keys needed for admin routes), without TLS for inject */
  app: FastifyInstance
  /** the local-socket app (admin routes as local-admin) */
  admin: FastifyInstance
  clock: { now: number }
  /** reopen closes everything and opens the same state dir again */
  reopen: () => Promise<TestController>
  close: () => Promise<void>
}

/** testController opens a store in a temp dir and builds both apps over it, for inject(). */
export async function testController (t: Teardown, opts: {
  dir?: string
  state?: Partial<ControllerStateOptions>
  app?: Partial<BuildAppOptions>
} = {}): Promise<TestController> {
  const dir = opts.dir ?? await tempDir(t)
  const store = await openStore(dir)
  const clock = { now: Date.now() }
  const state = createControllerState({ store, fingerprint: 'ab'.repeat(32), now: () => clock.now, ...opts.state })
  const metrics = createControllerMetrics(state)
  const app = await buildApp({ state, metrics, mode: 'public', rateLimit: false, ...opts.app })
  const admin = await buildApp({ state, metrics, mode: 'local', ...opts.app })
  let closed = false
  const tc: TestController = {
    dir,
    store,
    state,
    app,
    admin,
    clock,
    async close () {
      if (closed) return
      closed = true
      await app.close()
      await admin.close()
      await state.close()
      await store.close()
    },
    async reopen () {
      await tc.close()
      return await testController(t, { ...opts, dir })
    }
  }
  t.teardown(tc.close)
  return tc
}

export interface TestMachine { machine: MachineKeyPair, wg: WireGuardKeyPair }

export function newMachine (): TestMachine {
  return { machine: generateMachineKeyPair(), wg: generateWireGuardKeyPair() }
}

/** registration builds a correctly signed RegisterRequest; `tamper` changes it after signing. */
export function registration (controllerKey: string, opts: {
  authKey?: string
  hostname?: string
  m?: TestMachine
  requestTags?: string[]
  timestamp?: number
  version?: number
}): RegisterRequest {
  const m = opts.m ?? newMachine()
  const unsigned: Omit<RegisterRequest, 'signature' | 'wgProof'> = {
    version: opts.version ?? PROTOCOL_VERSION,
    machineKey: m.machine.publicKey,
    wgKey: m.wg.publicKey,
    hostname: opts.hostname ?? 'laptop',
    timestamp: opts.timestamp ?? Date.now()
  }
  if (opts.authKey !== undefined) unsigned.authKey = opts.authKey
  if (opts.requestTags !== undefined) unsigned.requestTags = opts.requestTags
  const payload = registerSigningPayload(unsigned)
  return {
    ...unsigned,
    signature: signMessage(m.machine.secretKey, REGISTER_DOMAIN, payload),
    wgProof: wireGuardProof(m.wg.privateKey, controllerKey, REGISTER_DOMAIN, payload)
  }
}

/** call injects a JSON request and returns status and parsed body. */
export async function call (app: FastifyInstance, method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, payload?: unknown, headers: Record<string, string> = {}): Promise<{ status: number, body: any }> {
  const res = await app.inject({ method, url, headers, ...(payload !== undefined ? { payload: payload as object } : {}) })
  return { status: res.statusCode, body: res.body === '' ? undefined : JSON.parse(res.body) }
}

/** setupUserKey makes a user and an auth key for it through the admin API. */
export async function setupUserKey (tc: TestController, key: Record<string, unknown> = {}, user = 'alice'): Promise<string> {
  if (tc.state.getUser(user) === undefined) await call(tc.admin, 'POST', '/v1/users', { name: user })
  const r = await call(tc.admin, 'POST', '/v1/authkeys', { user, ...key })
  if (r.status !== 201) throw new Error(`auth key create failed: ${JSON.stringify(r.body)}`)
  return r.body.key as string
}

export interface HttpAnswer { status: number, body: any, fingerprint?: string }

/**
 * pinnedRequest sends JSON over HTTPS to a controller with a self-signed certificate,
 * trusting it only if its SHA-256 fingerprint is `fingerprint` (64 hex digits).
 */
export async function pinnedRequest (url: string, fingerprint: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<HttpAnswer> {
  const u = new URL(path, url)
  const want = fingerprint.toUpperCase().match(/../g)!.join(':')
  // A fresh connection per request (agent: false), so that every request sees a handshake to check.
  const opts: RequestOptions & { rejectUnauthorized: boolean } = { hostname: u.hostname, port: u.port, path: u.pathname + u.search, method, headers, rejectUnauthorized: false, agent: false }
  return await jsonRequest(httpsRequest as typeof httpRequest, opts, body, (socket) => {
    const got = (socket as TLSSocket).getPeerCertificate().fingerprint256
    if (got !== want) throw new Error(`controller certificate ${got} does not match the pinned ${want}`)
    return got
  })
}

/** socketRequest sends JSON over a Unix socket (the local admin server). */
export async function socketRequest (socketPath: string, method: string, path: string, body?: unknown): Promise<HttpAnswer> {
  return await jsonRequest(httpRequest, { socketPath, path, method, headers: {} }, body)
}

async function jsonRequest (request: typeof httpRequest, opts: RequestOptions, body: unknown, check?: (socket: Socket) => string): Promise<HttpAnswer> {
  const payload = body === undefined ? undefined : JSON.stringify(body)
  if (payload !== undefined) opts.headers = { ...opts.headers, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)) }
  return await new Promise((resolve, reject) => {
    let fingerprint: string | undefined
    const req = request(opts, res => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8')
        let parsed: unknown = text
        try { parsed = text === '' ? undefined : JSON.parse(text) } catch {}
        resolve({ status: res.statusCode ?? 0, body: parsed, ...(fingerprint !== undefined ? { fingerprint } : {}) })
      })
      res.on('error', reject)
    })
    if (check !== undefined) {
      req.on('socket', socket => {
        socket.once('secureConnect', () => {
          try { fingerprint = check(socket) } catch (e) { req.destroy(e as Error) }
        })
      })
    }
    req.on('error', reject)
    req.end(payload)
  })
}
