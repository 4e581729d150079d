import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable, Writable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { parseCredential, generateMachineKeyPair, generateWireGuardKeyPair, isWarrenError, type Node, type WarrenError } from '@warren/protocol'
import { startController, type RunningController } from '@warren/controller'
import { registerNode } from '@warren/node'
import { createControllerTransport } from '@warren/sdk'
import { runCli } from '../src/program.js'

/** WARREN_BIN is the compiled CLI main, which the `warren` executable (cli/bin/warren.js) runs. */
export const WARREN_BIN = fileURLToPath(new URL('../src/bin/warren.js', import.meta.url))

/** Scope is the part of a tap test that helpers need: cleanup at its end. */
export interface Scope { teardown(fn: () => unknown): void }

export interface CliResult { code: number, stdout: string, stderr: string }

/** Env variables that would change which controller the CLI talks to; tests set them explicitly. */
const CLEAN_ENV = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('WARREN_')))

/** Collector is a writable stream that keeps what was written to it. */
interface Collector { stream: Writable, text: () => Promise<string> }

function collector (): Collector {
  const chunks: Buffer[] = []
  const stream = new Writable({ write (chunk: Buffer, _encoding, done) { chunks.push(chunk); done() } })
  const text = async (): Promise<string> => {
    await new Promise(resolve => stream.end(resolve))
    return Buffer.concat(chunks).toString('utf8')
  }
  return { stream, text }
}

/**
 * runWarren runs a CLI command line in this process, as the `warren` executable would,
 * with its own output streams and environment, and collects its exit code and output.
 * `stdin` is what the command reads from standard input.
 */
export async function runWarren (args: string[], env: Record<string, string> = {}, stdin = ''): Promise<CliResult> {
  const out = collector()
  const err = collector()
  const code = await runCli(['node', 'warren', ...args], {
    stdout: out.stream, stderr: err.stream, stdin: Readable.from([Buffer.from(stdin)]), env: { ...CLEAN_ENV, ...env }
  })
  return { code, stdout: await out.text(), stderr: await err.text() }
}

/** spawnWarren runs the real CLI as a process and collects its exit code and output. */
export async function spawnWarren (args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  const child = spawn(process.execPath, [WARREN_BIN, ...args], { env: { ...CLEAN_ENV, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (b: Buffer) => { stdout += b.toString('utf8') })
  child.stderr.on('data', (b: Buffer) => { stderr += b.toString('utf8') })
  const code = await new Promise<number>(resolve => child.on('close', c => { resolve(c ?? -1) }))
  return { code, stdout, stderr }
}

/**
 * startTestController starts a controller in this process (silent, no rate limit) on
 * 127.0.0.1 with a fresh state dir; it is closed when the test ends.
 */
export async function startTestController (t: Scope): Promise<RunningController & { stateDir: string }> {
  const stateDir = join(tempDir(t, 'warren-ctl-'), 'state')
  const ctl = await startController({ stateDir, listen: '127.0.0.1:0', logger: false, rateLimit: false })
  t.teardown(async () => { await ctl.close() })
  return Object.assign(ctl, { stateDir })
}

/** tempDir makes a directory that is removed when the test ends. */
export function tempDir (t: Scope, prefix = 'warren-cli-'): string {
  const d = mkdtempSync(join(tmpdir(), prefix))
  t.teardown(() => { rmSync(d, { recursive: true, force: true }) })
  return d
}

export interface ServedController {
  url: string
  /** the fingerprint line as printed (colon-separated) */
  printedFingerprint: string
  stateDir: string
  child: ChildProcess
  stdout: () => string
  /** stop sends a signal and resolves with the exit code */
  stop: (signal?: NodeJS.Signals) => Promise<number | null>
}

/**
 * serveController runs `warren controller serve --listen 127.0.0.1:0 --no-relay` (the
 * relay would change this namespace's kernel settings) as a child and
 * waits until it prints its URL and fingerprint (or exits). It is stopped when
 * the test ends. Pass the stateDir of a stopped one to restart it.
 */
export async function serveController (t: Scope, opts: { stateDir?: string, args?: string[] } = {}): Promise<ServedController> {
  const stateDir = opts.stateDir ?? join(tempDir(t, 'warren-ctl-'), 'state')
  const child = spawn(process.execPath, [WARREN_BIN, 'controller', 'serve', '--state-dir', stateDir, '--listen', '127.0.0.1:0', '--no-relay', ...(opts.args?.includes('--stun-port') === true ? [] : ['--stun-port', '0']), ...(opts.args ?? [])], {
    env: CLEAN_ENV, stdio: ['ignore', 'pipe', 'pipe']
  })
  let out = ''
  let err = ''
  child.stdout!.on('data', (b: Buffer) => { out += b.toString('utf8') })
  child.stderr!.on('data', (b: Buffer) => { err += b.toString('utf8') })
  const exited = new Promise<number | null>(resolve => child.on('exit', c => { resolve(c) }))
  const stop = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal)
    return await exited
  }
  t.teardown(async () => { await stop() })
  const started = /listening on (https:\/\/\S+)\n(?:.*\n)*?certificate fingerprint \(SHA-256\): (\S+)\n/
  const m = await new Promise<RegExpExecArray | null>(resolve => {
    child.stdout!.on('data', () => { const found = started.exec(out); if (found !== null) resolve(found) })
    void exited.then(() => { resolve(started.exec(out)) })
  })
  if (m === null) throw new Error(`controller did not start; stdout: ${out} stderr: ${err.slice(-2000)}`)
  return { url: m[1]!, printedFingerprint: m[2]!, stateDir, child, stdout: () => out, stop }
}

/**
 * joinNode registers a fresh node with an auth key over the real machine API, as a
 * daemon would, trusting the pin in the key.
 */
export async function joinNode (ctl: { url: string }, authKey: string, hostname: string): Promise<Node> {
  const transport = createControllerTransport({ url: ctl.url, fingerprint: parseCredential(authKey, 'auth').fingerprint! })
  try {
    const reg = await registerNode(transport, {
      machineKey: generateMachineKeyPair(),
      wireguardPrivateKey: generateWireGuardKeyPair().privateKey,
      hostname,
      authKey
    })
    return reg.node
  } finally {
    transport.close()
  }
}

/** Asserts is the part of a tap test that the helpers below use. */
export interface Asserts {
  equal(found: unknown, wanted: unknown, message: string): boolean
  match(found: unknown, pattern: unknown, message: string): boolean
}

/** ok asserts a command succeeded and returns its stdout. */
export function ok (tt: Asserts, r: CliResult, what: string): string {
  tt.equal(r.code, 0, `${what} exits 0${r.code !== 0 ? `: ${r.stderr}` : ''}`)
  return r.stdout
}

/** failsWith asserts one clear error line on stderr, nothing on stdout, and the exit code. */
export function failsWith (tt: Asserts, r: CliResult, pattern: RegExp, what: string, code = 1): void {
  tt.equal(r.code, code, `${what} exits ${code}`)
  const lines = r.stderr.trimEnd().split('\n')
  tt.equal(lines.length, 1, `${what} prints one line: ${r.stderr}`)
  tt.match(lines[0], /^warren: /, `${what} starts with 'warren: '`)
  tt.match(lines[0], pattern, what)
  tt.equal(r.stdout, '', `${what} prints nothing on stdout`)
}

/** json parses a command's stdout. */
export function json<T> (r: CliResult): T {
  return JSON.parse(r.stdout) as T
}

/** rejection awaits a call that must fail with a WarrenError and returns that error. */
export async function rejection (p: Promise<unknown>): Promise<WarrenError> {
  try { await p } catch (e) {
    if (isWarrenError(e)) return e
    throw e
  }
  throw new Error('expected the call to fail')
}
