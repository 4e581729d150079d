import { spawn, execFile } from 'node:child_process'

/** ExecResult is what a finished command printed and how it exited. */
export interface ExecResult {
  stdout: string
  stderr: string
  exitCode: number
}

/** ExecOptions tune one short command. */
export interface ExecOptions {
  input?: string
  /** return a non-zero exit instead of throwing */
  allowFail?: boolean
  env?: Record<string, string | undefined>
  timeoutMs?: number
}

/**
 * execCommand runs a short command (no shell, LC_ALL=C) and throws an error naming the
 * command, exit code and stderr when it fails, unless allowFail is set.
 */
export async function execCommand (argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  return await new Promise((resolve, reject) => {
    const child = execFile(argv[0]!, argv.slice(1), {
      env: { ...process.env, ...opts.env, LC_ALL: 'C' },
      timeout: opts.timeoutMs ?? 60_000,
      maxBuffer: 64 * 1024 * 1024,
      encoding: 'utf8'
    }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : err.code === 'ENOENT' ? 127 : 1
      const result = { stdout, stderr: code === 127 && stderr === '' ? `${argv[0]}: command not found` : stderr, exitCode: code }
      if (code !== 0 && opts.allowFail !== true) {
        reject(new Error(`\`${argv.join(' ')}\` failed (exit ${code}${err?.signal != null ? `, ${err.signal}` : ''}): ${result.stderr.trim()}`))
      } else resolve(result)
    })
    // A command that exits without reading its input must not crash the test with EPIPE.
    child.stdin?.on('error', () => undefined)
    if (opts.input === undefined) child.stdin?.end()
    else child.stdin?.end(opts.input)
  })
}

/** ProcessExit is how a long-running process ended. */
export interface ProcessExit {
  code: number | null
  signal: NodeJS.Signals | null
}

/** ProcessHandle is a long-running process that a test started and must stop. */
export interface ProcessHandle {
  readonly pid: number
  readonly argv: readonly string[]
  /** resolves when the process has exited (never rejects) */
  readonly exited: Promise<ProcessExit>
  /** output is everything it printed so far, stdout and stderr interleaved (the last 1 MiB) */
  output: () => string
  /** waitForLine resolves with the first output line (past or future) that matches */
  waitForLine: (pattern: RegExp, timeoutMs?: number) => Promise<RegExpMatchArray>
  /** kill sends SIGTERM, then SIGKILL after graceMs, and resolves once it has exited */
  kill: (signal?: NodeJS.Signals, graceMs?: number) => Promise<ProcessExit>
}

/** SpawnOptions tune spawnProcess. */
export interface SpawnOptions {
  env?: Record<string, string | undefined>
  cwd?: string
}

const OUTPUT_LIMIT = 1024 * 1024

/** spawnProcess starts a long-running process with its output captured for waitForLine. */
export function spawnProcess (argv: readonly string[], opts: SpawnOptions = {}): ProcessHandle {
  const child = spawn(argv[0]!, argv.slice(1), {
    env: { ...process.env, ...opts.env, LC_ALL: 'C' },
    cwd: opts.cwd,
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let text = ''
  let partial = ''
  const lines: string[] = []
  const waiters = new Set<{ pattern: RegExp, resolve: (m: RegExpMatchArray) => void }>()
  let exitInfo: ProcessExit | undefined
  const exited = new Promise<ProcessExit>(resolve => {
    child.on('error', err => {
      text += `\n[spawn failed: ${err.message}]\n`
      exitInfo = { code: 127, signal: null }
      resolve(exitInfo)
    })
    child.on('close', (code, signal) => {
      exitInfo = { code, signal }
      resolve(exitInfo)
    })
  })
  const onData = (b: Buffer): void => {
    const s = b.toString('utf8')
    text = (text + s).slice(-OUTPUT_LIMIT)
    const parts = (partial + s).split('\n')
    partial = parts.pop()!
    for (const line of parts) {
      lines.push(line)
      if (lines.length > 20_000) lines.shift()
      for (const w of waiters) {
        const m = line.match(w.pattern)
        if (m !== null) { waiters.delete(w); w.resolve(m) }
      }
    }
  }
  child.stdout!.on('data', onData)
  child.stderr!.on('data', onData)

  const handle: ProcessHandle = {
    pid: child.pid ?? -1,
    argv: [...argv],
    exited,
    output: () => text,
    async waitForLine (pattern, timeoutMs = 10_000) {
      for (const line of lines) {
        const m = line.match(pattern)
        if (m !== null) return m
      }
      return await new Promise((resolve, reject) => {
        const waiter = { pattern, resolve: (m: RegExpMatchArray) => { clearTimeout(timer); resolve(m) } }
        const fail = (why: string): void => {
          waiters.delete(waiter)
          reject(new Error(`\`${argv.join(' ')}\` ${why} before printing a line matching ${String(pattern)}; its output ended with:\n${text.slice(-2000)}`))
        }
        const timer = setTimeout(() => fail(`ran ${timeoutMs} ms`), timeoutMs)
        waiters.add(waiter)
        void exited.then(e => { if (waiters.has(waiter)) { clearTimeout(timer); fail(`exited (code ${e.code}, signal ${e.signal})`) } })
      })
    },
    async kill (signal = 'SIGTERM', graceMs = 3000) {
      if (exitInfo !== undefined) return exitInfo
      child.kill(signal)
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
      const e = await exited
      clearTimeout(timer)
      return e
    }
  }
  return handle
}

/** WaitOptions tune waitFor. */
export interface WaitOptions {
  timeoutMs?: number
  intervalMs?: number
  /** what was awaited, for the timeout error */
  message?: string
}

/**
 * waitFor polls a condition until it returns a truthy value (which it resolves with),
 * and fails with the last error or value seen when the deadline passes.
 */
export async function waitFor<T> (condition: () => T | Promise<T>, opts: WaitOptions = {}): Promise<NonNullable<T>> {
  const deadline = Date.now() + (opts.timeoutMs ?? 10_000)
  let last: unknown
  for (;;) {
    try {
      const v = await condition()
      if (v !== undefined && v !== null && v !== false && v !== 0 && v !== '') return v as NonNullable<T>
      last = v
    } catch (e) {
      last = e
    }
    if (Date.now() >= deadline) {
      const detail = last instanceof Error ? last.message : JSON.stringify(last)
      throw new Error(`timed out after ${opts.timeoutMs ?? 10_000} ms waiting for ${opts.message ?? 'a condition'} (last: ${detail})`)
    }
    await new Promise(resolve => setTimeout(resolve, opts.intervalMs ?? 50))
  }
}
