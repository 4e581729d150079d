/**
 * Shared parts of the control-plane scale benchmark: the IPC messages between the
 * orchestrator, the controller process and the simulated-node processes, fast keys for
 * simulated nodes, /proc readings, and spawning children with a raised fd limit.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { request as httpRequest } from 'node:http'
import { request as httpsRequest, type Agent } from 'node:https'
import { readFileSync } from 'node:fs'
import { generateKeyPairSync, sign, diffieHellman, createHmac, createPublicKey, type KeyObject } from 'node:crypto'
import { PROTOCOL_VERSION, REGISTER_DOMAIN, registerSigningPayload, type RegisterRequest } from '@warren/protocol'

/** SimKeys are a simulated node's keys, made and used with OpenSSL (the wire forms are the protocol's). */
export interface SimKeys {
  machineKey: string
  machinePrivate: KeyObject
  wgKey: string
  wgPrivate: KeyObject
}

const rawPublic = (k: KeyObject): string => Buffer.from(k.export({ format: 'jwk' }).x!, 'base64url').toString('base64')

export function simKeys (): SimKeys {
  const m = generateKeyPairSync('ed25519')
  const w = generateKeyPairSync('x25519')
  return { machineKey: rawPublic(m.publicKey), machinePrivate: m.privateKey, wgKey: rawPublic(w.publicKey), wgPrivate: w.privateKey }
}

/** simSign signs like the protocol's signMessage: Ed25519 over `domain\nmessage`, base64. */
export function simSign (k: SimKeys, domain: string, message: string): string {
  return sign(null, Buffer.from(`${domain}\n${message}`, 'utf8'), k.machinePrivate).toString('base64')
}

/** simRegistration builds a signed RegisterRequest with a WireGuard proof, like the daemon does. */
export function simRegistration (k: SimKeys, controllerKey: string, hostname: string, authKey: string): RegisterRequest {
  const unsigned = { version: PROTOCOL_VERSION, authKey, machineKey: k.machineKey, wgKey: k.wgKey, hostname, timestamp: Date.now() }
  const payload = registerSigningPayload(unsigned)
  const theirs = createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: Buffer.from(controllerKey, 'base64').toString('base64url') }, format: 'jwk' })
  const shared = diffieHellman({ privateKey: k.wgPrivate, publicKey: theirs })
  return {
    ...unsigned,
    signature: simSign(k, REGISTER_DOMAIN, payload),
    wgProof: createHmac('sha256', shared).update(`${REGISTER_DOMAIN}\n${payload}`).digest('base64')
  }
}

/** now is a wall-clock time in ms with sub-ms precision, comparable across processes. */
export function now (): number {
  return performance.timeOrigin + performance.now()
}

// ---------- IPC ----------

export interface ControllerReady { op: 'ready', url: string, adminSocket: string, controllerKey: string, ca: string }
export interface MapServiceFigures {
  messages: number
  bytes: number
  changes: number
  fanout: number
  changeSeconds: number
  connected: number
  memory: { heapUsedMiB: number, heapTotalMiB: number, externalMiB: number, arrayBuffersMiB: number }
}

export interface SimNodeSpec { hostname: string, authKey: string, expectPeers: number }

/** ClientRequest is what the orchestrator asks a simulated-node process to do. */
export type ClientRequest =
  | { op: 'init', url: string, ca: string, controllerKey: string }
  | { op: 'register', nodes: SimNodeSpec[] }
  | { op: 'connect' | 'synced' | 'stats' | 'close' }
  | { op: 'watch' | 'collect' | 'unwatch', key: string }

export interface ClientStats { messages: number, bytes: number, problems: string[], unexpectedCloses: number }

const HTTP_TIMEOUT_MS = 30_000

/**
 * httpJson sends one JSON request to the controller: over HTTPS (`agent` carries the
 * pinned certificate) or, with `socketPath`, to the local admin socket.
 */
export async function httpJson (method: string, target: { url: string, agent: Agent } | { socketPath: string }, path: string, body?: unknown): Promise<{ status: number, json: any }> {
  return await new Promise((resolve, reject) => {
    const headers = body === undefined ? {} : { 'content-type': 'application/json' }
    const done = (res: import('node:http').IncomingMessage): void => {
      const chunks: Buffer[] = []
      res.on('data', (b: Buffer) => chunks.push(b))
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8')
        resolve({ status: res.statusCode ?? 0, json: text === '' ? undefined : JSON.parse(text) })
      })
    }
    const req = 'socketPath' in target
      ? httpRequest({ socketPath: target.socketPath, path, method, headers }, done)
      : httpsRequest(new URL(path, target.url), { method, agent: target.agent, headers }, done)
    // A deadline from the start, not an idle timeout: a request can also wait for a socket.
    const deadline = setTimeout(() => req.destroy(new Error(`${method} ${path}: no answer in ${HTTP_TIMEOUT_MS} ms`)), HTTP_TIMEOUT_MS)
    req.on('close', () => clearTimeout(deadline))
    req.on('error', reject)
    req.end(body === undefined ? undefined : JSON.stringify(body))
  })
}

// ---------- processes ----------

/** procStats reads a process's CPU seconds (user + system) and memory from /proc. */
export function procStats (pid: number): { cpuSeconds: number, rssMiB: number, peakRssMiB: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  // after the command name: state is field 3, so utime (14) and stime (15) are at 11 and 12
  const ticks = Number(fields[11]) + Number(fields[12])
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kib = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN)
  return { cpuSeconds: ticks / 100, rssMiB: kib('VmRSS') / 1024, peakRssMiB: kib('VmHWM') / 1024 }
}

/** FD_LIMIT is the open-file limit children ask for: each simulated node and each session is a socket. */
export const FD_LIMIT = 65536

/**
 * spawnNode runs a node script with an IPC channel, through a shell that first raises
 * the open-file limit (node cannot call setrlimit): to FD_LIMIT, or to the hard limit.
 */
export function spawnNode (script: string, env: Record<string, string> = {}, nodeArgs: string[] = []): ChildProcess {
  const cmd = `ulimit -n ${FD_LIMIT} 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$0" "$@"`
  return spawn('/bin/sh', ['-c', cmd, process.execPath, ...nodeArgs, script], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env, ...env }
  })
}

/**
 * createRpc sends requests to a child over IPC and matches replies by id; a child that
 * exits fails every pending request.
 */
export function createRpc (child: ChildProcess, name: string): <T>(req: object, timeoutMs?: number) => Promise<T> {
  let next = 0
  const pending = new Map<number, { resolve: (v: unknown) => void, reject: (e: Error) => void }>()
  child.on('message', (m: { rid?: number, error?: string }) => {
    if (m.rid === undefined) return
    const p = pending.get(m.rid)
    if (p === undefined) return
    pending.delete(m.rid)
    if (m.error !== undefined) p.reject(new Error(`${name}: ${m.error}`))
    else p.resolve(m)
  })
  child.on('exit', code => {
    for (const p of pending.values()) p.reject(new Error(`${name} exited with ${code}`))
    pending.clear()
  })
  return async <T>(req: object, timeoutMs = 600_000): Promise<T> => await new Promise<T>((resolve, reject) => {
    const rid = ++next
    const timer = setTimeout(() => { pending.delete(rid); reject(new Error(`${name}: no answer to ${JSON.stringify(req).slice(0, 80)} in ${timeoutMs} ms`)) }, timeoutMs)
    pending.set(rid, { resolve: v => { clearTimeout(timer); resolve(v as T) }, reject: e => { clearTimeout(timer); reject(e) } })
    child.send({ ...req, rid })
  })
}

/** serveRpc answers requests from the parent with a handler; errors travel back as messages. */
export function serveRpc (handler: (req: { op: string, rid: number } & Record<string, unknown>) => Promise<object>): void {
  process.on('message', (req: { op: string, rid: number } & Record<string, unknown>) => {
    handler(req).then(
      res => process.send!({ ...res, rid: req.rid }),
      (err: Error) => process.send!({ rid: req.rid, error: err.stack ?? err.message })
    )
  })
  process.on('disconnect', () => process.exit(0))
}
