/**
 * Shared parts of the control-plane scale benchmark: the IPC messages between the
 * orchestrator, the controller process and the simulated-node processes, fast keys for
 * simulated nodes, /proc readings, and spawning children with a raised fd limit.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { request as httpRequest } from 'node:http'
import { request as httpsRequest, type Agent } from 'node:https'
import { readFileSync } from 'node:fs'
import { sign, diffieHellman, createHmac, createPrivateKey, createPublicKey, randomBytes, type KeyObject } from 'node:crypto'
import { PROTOCOL_VERSION, REGISTER_DOMAIN, registerSigningPayload, type RegisterRequest } from '@warren/protocol'

/** SimKeys are a simulated node's keys, made and used with OpenSSL (the wire forms are the protocol's). */
export interface SimKeys {
  machineKey: string
  machinePrivate: KeyObject
  wgKey: string
  wgPrivate: KeyObject
}

/** PKCS8_PREFIX is the DER of a PKCS#8 private key up to its 32-byte seed, per curve. */
const PKCS8_PREFIX = {
  ed25519: Buffer.from('302e020100300506032b657004220420', 'hex'),
  x25519: Buffer.from('302e020100300506032b656e04220420', 'hex')
}

/**
 * keyFromSeed makes a key pair from a random seed, and the raw public key from its DER
 * (the last 32 bytes). Not generateKeyPairSync: on Node 20.20 (OpenSSL 3.0) a process
 * that made thousands of keys with it and exported them as JWK deadlocked now and then,
 * its main thread waiting on a futex forever at 0% CPU (gdb: a GC during
 * KeyObjectHandle::ExportJWK ran ~KeyGenJob, which locks the key's mutex that the
 * export holds). That stalled the 10,000-node run with whole worker processes silent.
 */
function keyFromSeed (curve: keyof typeof PKCS8_PREFIX): { privateKey: KeyObject, publicKey: string } {
  const privateKey = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX[curve], randomBytes(32)]), format: 'der', type: 'pkcs8' })
  const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' })
  return { privateKey, publicKey: spki.subarray(spki.length - 32).toString('base64') }
}

export function simKeys (): SimKeys {
  const m = keyFromSeed('ed25519')
  const w = keyFromSeed('x25519')
  return { machineKey: m.publicKey, machinePrivate: m.privateKey, wgKey: w.publicKey, wgPrivate: w.privateKey }
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

export interface ControllerReady { op: 'ready', url: string, adminSocket: string, controllerKey: string, ca: string, fdLimit: number }
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

/** HEARTBEAT_MS is how often a child reports on a request it is still working on. */
export const HEARTBEAT_MS = 5_000
/**
 * SILENCE_MS is how long a child may send nothing while it owes an answer. Its heartbeat
 * comes from its event loop, so silence means that loop is blocked (a deadlock, or a
 * sync call that never returns) and waiting longer cannot help.
 */
export const SILENCE_MS = 60_000

/** RpcReply is what a child sends: a heartbeat with its progress, an answer, or an error. */
interface RpcReply { rid?: number, heartbeat?: boolean, progress?: string, error?: string }

/**
 * createRpc sends requests to a child over IPC and matches replies by id. A request
 * fails fast, naming the request and the child's last progress report: when the child
 * exits, when it has sent nothing for SILENCE_MS, or after timeoutMs in all.
 */
export function createRpc (child: ChildProcess, name: string): <T>(req: object, timeoutMs?: number) => Promise<T> {
  let next = 0
  interface Pending { what: string, progress: string, heard: number, resolve: (v: unknown) => void, reject: (e: Error) => void }
  const pending = new Map<number, Pending>()
  const describe = (p: Pending): string => `${p.what}${p.progress === '' ? '' : ` (last progress: ${p.progress})`}`
  child.on('message', (m: RpcReply) => {
    if (m.rid === undefined) return
    const p = pending.get(m.rid)
    if (p === undefined) return
    p.heard = Date.now()
    if (m.progress !== undefined) p.progress = m.progress
    if (m.heartbeat === true) return
    pending.delete(m.rid)
    if (m.error !== undefined) p.reject(new Error(`${name}: ${m.error}`))
    else p.resolve(m)
  })
  child.on('exit', code => {
    for (const p of pending.values()) p.reject(new Error(`${name} exited with ${code} while working on ${describe(p)}`))
    pending.clear()
  })
  return async <T>(req: object, timeoutMs = 600_000): Promise<T> => await new Promise<T>((resolve, reject) => {
    const rid = ++next
    const started = Date.now()
    const p: Pending = { what: JSON.stringify(req).slice(0, 80), progress: '', heard: started, resolve: v => { clearInterval(watch); resolve(v as T) }, reject: e => { clearInterval(watch); reject(e) } }
    const fail = (why: string): void => { pending.delete(rid); p.reject(new Error(`${name} (pid ${child.pid}): ${why} ${describe(p)}`)) }
    const watch = setInterval(() => {
      const now = Date.now()
      if (now - p.heard > SILENCE_MS) {
        fail(`sent nothing for ${SILENCE_MS / 1000} s, so its event loop is blocked (see where with \`gdb -p ${child.pid} -batch -ex bt\`), while working on`)
      } else if (now - started > timeoutMs) {
        fail(`no answer in ${timeoutMs} ms to`)
      }
    }, 1000)
    pending.set(rid, p)
    child.send({ ...req, rid })
  })
}

/** RpcProgress lets a handler say how far it got; heartbeats carry the latest report. */
export type RpcProgress = (report: string) => void

/**
 * serveRpc answers requests from the parent with a handler; errors travel back as
 * messages. While a request runs, a heartbeat every HEARTBEAT_MS tells the parent that
 * this process's event loop still turns, with the handler's latest progress report.
 */
export function serveRpc (handler: (req: { op: string, rid: number } & Record<string, unknown>, progress: RpcProgress) => Promise<object>): void {
  process.on('message', (req: { op: string, rid: number } & Record<string, unknown>) => {
    let report: string | undefined
    const heartbeat = setInterval(() => {
      process.send!({ rid: req.rid, heartbeat: true, ...(report !== undefined ? { progress: report } : {}) })
    }, HEARTBEAT_MS)
    handler(req, r => { report = r }).then(
      res => process.send!({ ...res, rid: req.rid }),
      (err: Error) => process.send!({ rid: req.rid, error: err.stack ?? err.message })
    ).finally(() => clearInterval(heartbeat))
  })
  process.on('disconnect', () => process.exit(0))
}

/**
 * openFileLimit is this process's soft limit on open files (from /proc/self/limits):
 * every simulated node, map session and HTTP connection is one.
 */
export function openFileLimit (): number {
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'))
  return m === null || m[1] === 'unlimited' ? Infinity : Number(m[1])
}

/**
 * checkOpenFiles fails fast when a process cannot open the files a run needs, instead of
 * letting sockets fail one by one (EMFILE) deep into the run.
 */
export function checkOpenFiles (who: string, limit: number, need: number): void {
  if (limit >= need) return
  throw new Error(`${who} may open only ${limit} files (ulimit -n) but this run needs about ${need}, one per simulated node or map session; ` +
    `raise the hard limit (ulimit -Hn, LimitNOFILE= for a service, nofile in /etc/security/limits.conf) to at least ${need}, or pass fewer --nodes or a smaller --per-worker`)
}
