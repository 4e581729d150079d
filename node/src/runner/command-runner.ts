import { execa } from 'execa'
import { mkdtemp, writeFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { WarrenError } from '@warren/protocol'

/** CommandResult is what a finished command printed and how it exited. */
export interface CommandResult {
  stdout: string
  stderr: string
  exitCode: number
}

/** RunOptions tune one command. */
export interface RunOptions {
  /** written to the command's stdin; never logged, since it may carry keys */
  input?: string
  /** return a non-zero exit as a result instead of throwing CommandError */
  allowFail?: boolean
  /** variables to set (a string) or remove (undefined) for this command */
  env?: Record<string, string | undefined>
}

/** OpenOptions tune one long-lived command. */
export interface OpenOptions {
  /** variables to set (a string) or remove (undefined) for this command */
  env?: Record<string, string | undefined>
}

/** SessionExit says how a long-lived command ended. */
export interface SessionExit {
  /** the exit code; -1 when it was killed by a signal or never started */
  exitCode: number
  signal?: string
  /** what ended it, in words: "exit 1", "killed by SIGKILL" */
  reason: string
}

/** OutputStream names the stream a line of output came on. */
export type OutputStream = 'stdout' | 'stderr'

/**
 * CommandSession is a long-lived command (such as `nft -i`) that reads its stdin line by line:
 * the caller writes to it and reads what it prints, line by line, until it is closed.
 */
export interface CommandSession {
  readonly argv: string[]
  readonly pid: number | undefined
  /** running is true until the command has exited */
  readonly running: boolean
  /** write sends text to the command's stdin; false when it has exited (the text is dropped) */
  write: (text: string) => boolean
  /**
   * onLine calls the listener with each line the command prints (without its newline);
   * lines printed before the first listener came are kept for it. Returns the unsubscribe.
   */
  onLine: (listener: (line: string, stream: OutputStream) => void) => () => void
  /** exited resolves once the command has exited (it never rejects) */
  readonly exited: Promise<SessionExit>
  /** close ends stdin, waits up to graceMs (default 2 s) for the command to exit, then kills it */
  close: (graceMs?: number) => Promise<SessionExit>
  /** kill sends a signal (SIGKILL by default) */
  kill: (signal?: NodeJS.Signals) => void
  /** unref lets this process exit while the session is idle; ref holds it open again */
  unref: () => void
  ref: () => void
}

/**
 * CommandRunner is the one seam between Warren and the system's tools (`ip`, `wg`,
 * `nft`, `wireguard-go`): adapters take one, so tests can swap in a fake or a recorder.
 */
export interface CommandRunner {
  run: (argv: readonly string[], opts?: RunOptions) => Promise<CommandResult>
  /**
   * open starts a long-lived command and resolves once it runs (rejects with a CommandError
   * when it cannot start). Optional: runners without it (most fakes) make callers use `run`.
   */
  open?: (argv: readonly string[], opts?: OpenOptions) => Promise<CommandSession>
}

/** CommandRunnerOptions configure createCommandRunner. */
export interface CommandRunnerOptions {
  /** run every command inside this network namespace (`ip netns exec NS ...`) */
  netns?: string
  /** kill a command that runs longer than this; default 60 s */
  timeoutMs?: number
  /** called after every command, for debug logs and metrics; never sees stdin or stdout */
  onCommand?: (event: CommandEvent) => void
}

/** CommandEvent describes one finished command without its input or output. */
export interface CommandEvent {
  argv: string[]
  exitCode: number
  durationMs: number
  netns?: string
}

/** formatArgv shows an argv the way a person would type it into a shell. */
export function formatArgv (argv: readonly string[]): string {
  return argv.map(a => /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`).join(' ')
}

/**
 * CommandError says which command failed, how, and what it printed on stderr, so that a
 * failed reconcile reads like "`ip link add wg0 type wireguard` failed (exit 2): ...".
 */
export class CommandError extends WarrenError {
  readonly argv: string[]
  readonly exitCode: number
  readonly stderr: string

  constructor (argv: readonly string[], exitCode: number, stderr: string, opts: { netns?: string, cause?: unknown } = {}) {
    const where = opts.netns === undefined ? '' : ` in network namespace ${opts.netns}`
    const said = stderr.trim().slice(0, 2000)
    super('command_failed', `\`${formatArgv(argv)}\`${where} failed (exit ${exitCode})${said === '' ? '' : `: ${said}`}`,
      { status: 500, cause: opts.cause })
    this.argv = [...argv]
    this.exitCode = exitCode
    this.stderr = stderr
  }
}

/** isCommandError narrows an unknown thrown value. */
export function isCommandError (e: unknown): e is CommandError {
  return e instanceof CommandError
}

/** createCommandRunner returns the real runner: execa, LC_ALL=C, no shell. */
export function createCommandRunner (opts: CommandRunnerOptions = {}): CommandRunner {
  const prefix = opts.netns === undefined ? [] : ['ip', 'netns', 'exec', opts.netns]
  /** report tells onCommand that a command finished (never its input or output) */
  const report = (argv: readonly string[], exitCode: number, started: number): void => {
    opts.onCommand?.({ argv: [...argv], exitCode, durationMs: performance.now() - started, ...(opts.netns !== undefined ? { netns: opts.netns } : {}) })
  }
  const notFound = (program: string): string => `${program}: command not found (is it installed and on PATH?)`
  const timeout = opts.timeoutMs ?? 60_000
  return {
    async run (argv, runOpts = {}) {
      if (argv.length === 0) throw new WarrenError('command_failed', 'empty command: nothing to run', { status: 500 })
      const full = [...prefix, ...argv]
      const started = performance.now()
      const r = await execa(full[0]!, full.slice(1), {
        input: runOpts.input ?? '',
        reject: false,
        timeout,
        stripFinalNewline: false,
        env: { ...runOpts.env, LC_ALL: 'C' }
      })
      const stdout = String(r.stdout ?? '')
      let stderr = String(r.stderr ?? '')
      let exitCode = r.exitCode ?? -1
      if (r.exitCode === undefined) {
        // Not started or killed: say why instead of a bare exit code.
        const code = (r as { code?: string }).code
        if (code === 'ENOENT') {
          exitCode = 127
          stderr = notFound(full[0]!)
        } else if (r.timedOut) {
          stderr = `timed out after ${timeout} ms` + (stderr === '' ? '' : `; ${stderr}`)
        } else {
          stderr = (r.signal !== undefined ? `killed by ${r.signal}` : (r.shortMessage ?? 'did not run')) + (stderr === '' ? '' : `; ${stderr}`)
        }
      }
      report(argv, exitCode, started)
      if (exitCode !== 0 && runOpts.allowFail !== true) {
        throw new CommandError(argv, exitCode, stderr, { netns: opts.netns })
      }
      return { stdout, stderr, exitCode }
    },

    async open (argv, openOpts = {}) {
      if (argv.length === 0) throw new WarrenError('command_failed', 'empty command: nothing to run', { status: 500 })
      const full = [...prefix, ...argv]
      const started = performance.now()
      // No timeout and no buffering: the command lives as long as the caller wants, and its
      // output goes to the listeners only. No cleanup hook either: execa's would hold a SIGTERM
      // handler for as long as the command runs, and once the daemon's own handler has run it
      // re-raises the signal, cutting the daemon's orderly stop short. A command that reads
      // its stdin (as `nft -i` does) ends by itself when this process exits and the pipe closes.
      const sub = execa(full[0]!, full.slice(1), {
        stdin: 'pipe',
        buffer: false,
        reject: false,
        cleanup: false,
        env: { ...openOpts.env, LC_ALL: 'C' }
      })
      const spawned = await Promise.race([
        new Promise<true>(resolve => sub.once('spawn', () => resolve(true))),
        sub.then(r => r)
      ])
      if (spawned !== true) {
        const code = (spawned as { code?: string }).code
        const exitCode = code === 'ENOENT' ? 127 : spawned.exitCode ?? -1
        const said = code === 'ENOENT' ? notFound(full[0]!) : (spawned.shortMessage ?? 'did not start')
        report(argv, exitCode, started)
        throw new CommandError(argv, exitCode, said, { netns: opts.netns })
      }
      let running = true
      const kept: Array<[string, OutputStream]> = []
      const listeners = new Set<(line: string, stream: OutputStream) => void>()
      const emit = (line: string, stream: OutputStream): void => {
        if (listeners.size === 0) kept.push([line, stream])
        else for (const l of [...listeners]) l(line, stream)
      }
      for (const stream of ['stdout', 'stderr'] as const) {
        const readable = sub[stream]
        readable.setEncoding('utf8')
        let partial = ''
        readable.on('data', (chunk: string) => {
          const parts = (partial + chunk).split('\n')
          partial = parts.pop()!
          for (const line of parts) emit(line, stream)
        })
        readable.on('end', () => { if (partial !== '') emit(partial, stream); partial = '' })
      }
      // A write after the command exited fails with EPIPE; write() reports that as false.
      sub.stdin.on('error', () => {})
      const exited: Promise<SessionExit> = sub.then(r => {
        running = false
        const exitCode = r.exitCode ?? -1
        const signal = r.signal ?? undefined
        const reason = signal !== undefined ? `killed by ${signal}` : r.exitCode !== undefined ? `exit ${r.exitCode}` : (r.shortMessage ?? 'ended')
        report(argv, exitCode, started)
        return { exitCode, ...(signal !== undefined ? { signal } : {}), reason }
      })
      const handles = [sub, sub.stdin, sub.stdout, sub.stderr] as Array<{ ref?: () => void, unref?: () => void }>
      const session: CommandSession = {
        argv: [...argv],
        pid: sub.pid,
        get running () { return running },
        write: text => {
          if (!running || sub.stdin.destroyed || sub.stdin.writableEnded) return false
          sub.stdin.write(text)
          return true
        },
        onLine: listener => {
          listeners.add(listener)
          for (const [line, stream] of kept.splice(0)) listener(line, stream)
          return () => { listeners.delete(listener) }
        },
        exited,
        close: async (graceMs = 2000) => {
          if (running) {
            sub.stdin.end()
            const timer = setTimeout(() => sub.kill('SIGKILL'), graceMs)
            await exited
            clearTimeout(timer)
          }
          return await exited
        },
        kill: (signal = 'SIGKILL') => { if (running) sub.kill(signal) },
        unref: () => { for (const h of handles) h.unref?.() },
        ref: () => { for (const h of handles) h.ref?.() }
      }
      return session
    }
  }
}

/**
 * withSecretFile hands a secret to a tool that reads it only from a file path (as
 * `wg set IF private-key FILE` does; it cannot read a socket on /dev/stdin): the secret
 * lives in a 0600 file inside a fresh 0700 directory for the duration of `use`, then is
 * deleted. The path, not the secret, goes into argv.
 */
export async function withSecretFile<T> (secret: string, use: (path: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'warren-secret-'))
  try {
    const path = join(dir, 'secret')
    await writeFile(path, secret, { mode: 0o600, flag: 'wx' })
    return await use(path)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

/** RecordedCommand is one command that a recording or fake runner saw. */
export interface RecordedCommand {
  argv: string[]
  /** whether stdin was given; its content is not kept */
  hadInput: boolean
}

/** RecordingRunner passes commands through and remembers their argv (not their input). */
export interface RecordingRunner extends CommandRunner {
  readonly calls: RecordedCommand[]
  /** commands whose argv, joined by spaces, matches the pattern */
  matching: (pattern: RegExp) => RecordedCommand[]
}

/** createRecordingRunner wraps a runner to count what adapters ran (for tests and debugging). */
export function createRecordingRunner (inner: CommandRunner): RecordingRunner {
  const calls: RecordedCommand[] = []
  return {
    calls,
    matching: pattern => calls.filter(c => pattern.test(c.argv.join(' '))),
    async run (argv, opts) {
      calls.push({ argv: [...argv], hadInput: opts?.input !== undefined })
      return await inner.run(argv, opts)
    }
  }
}
