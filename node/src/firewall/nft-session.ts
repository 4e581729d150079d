/**
 * NftSession keeps one `nft -i` running and sends it element updates, one transaction per
 * input line. Why not one `nft -f -` per update: after a transaction that deletes elements
 * the kernel frees them once an RCU grace period has passed, and an nft process that closes
 * its netlink socket at exit waits for that (8-19 ms measured, more than the rest of the
 * update), so a peer leaving cost about twice a peer joining. A long-lived nft keeps its
 * socket open and pays the wait never; starting the process (about 4 ms) goes away too.
 *
 * The line protocol (nft 1.0.6, non-interactive stdin: no prompt, no echo):
 * - each input line is evaluated whole and sent as one batch, so the commands of one update
 *   joined with `; ` apply together or not at all, as with `nft -f`;
 * - errors go to stderr as three lines: `Error: ...`, the input line, and a line of carets
 *   under the part at fault; nothing goes to stdout for element commands;
 * - after each update line we send a marker: `list table inet <token>` of a table that does
 *   not exist. It is read-only and cheap, and its error quotes the token, so when that error
 *   arrives everything nft printed before it belongs to the update. The marker cannot share
 *   the update's line: a `list` narrows nft's cache to the table it names, and the element
 *   commands beside it would then fail to find their set.
 *
 * Anything else (output on stdout, a marker out of order, text without an `Error:` line, no
 * answer in time, nft exiting) means we no longer know what nft did: the update is rejected
 * with NftSessionError, the process is killed, and the next update starts a fresh one.
 */
import { randomBytes } from 'node:crypto'
import { WarrenError, createSerialQueue } from '@warren/protocol'
import type { CommandRunner, CommandSession, OutputStream } from '../runner/index.js'

export interface NftSessionInit {
  /** a runner with `open`, so that nft runs where the runner runs commands (its namespace) */
  runner: CommandRunner
  /** give up on one update after this long, kill nft and start afresh next time; default 10 s */
  timeoutMs?: number
  /**
   * run `nft --check -i`: each line is evaluated and sent to the kernel, which validates the
   * batch and then discards it, so apply() only says whether the transaction would apply
   */
  check?: boolean
}

/** NftRefusedError: nft or the kernel refused the transaction, so nothing of it was applied. */
export class NftRefusedError extends WarrenError {
  /** what nft printed about it (stderr, long input lines shortened around the fault) */
  readonly said: string
  constructor (said: string) {
    super('nft_refused', `nft refused the transaction: ${said}`, { status: 500 })
    this.said = said
  }
}

/**
 * NftSessionError: the session broke during the update (nft exited, did not answer in
 * time, or printed something unexpected). Whether the transaction applied is unknown.
 */
export class NftSessionError extends WarrenError {
  constructor (message: string, cause?: unknown) {
    super('nft_session_failed', message, { status: 500, ...(cause !== undefined ? { cause } : {}) })
  }
}

export interface NftSession {
  /**
   * apply sends an nft script of commands (one per line, no comments) as one transaction and
   * resolves once nft has applied it. It rejects with NftRefusedError when nft refused it
   * (nothing applied) and with NftSessionError when the outcome is unknown. Calls run one at
   * a time, in order.
   */
  apply: (script: string) => Promise<void>
  /** close ends nft (it exits at the end of its input); the next apply starts a new one */
  close: () => Promise<void>
  /** pid of the running nft, undefined when none runs */
  readonly pid: number | undefined
  /** how many times nft was started, for tests and metrics */
  readonly starts: number
}

const CARETS = /^\s*\^+\s*$/

/**
 * condenseNftError shortens the input lines that nft quotes in its errors: in a session one
 * transaction is one line, which may be kilobytes long. Each quoted line is cut to a window
 * around its carets, so the message shows the element at fault.
 */
export function condenseNftError (text: string, width = 160): string {
  const lines = text.replace(/\n+$/, '').split('\n')
  for (let i = 0; i + 1 < lines.length; i++) {
    const line = lines[i]!
    const carets = lines[i + 1]!
    if (line.length <= width || !CARETS.test(carets)) continue
    const start = carets.indexOf('^')
    const end = carets.lastIndexOf('^') + 1
    const from = Math.max(0, Math.min(start - 40, end - width))
    const to = Math.min(line.length, Math.max(end + 40, from + width))
    const head = from > 0 ? '...' : ''
    lines[i] = head + line.slice(from, to) + (to < line.length ? '...' : '')
    lines[i + 1] = ' '.repeat(head.length + start - from) + '^'.repeat(Math.max(1, Math.min(end, to) - start))
    i++
  }
  return lines.join('\n')
}

/**
 * toLine joins a script's commands into one input line. It refuses what would break the
 * line protocol: a `#` (nft reads the rest of the line as a comment) or a carriage return.
 */
function toLine (script: string): string {
  if (/[#\r]/.test(script)) {
    throw new WarrenError('bad_nft_script', 'an nft session line cannot hold a comment (#) or a carriage return; send such a script with `nft -f`', { status: 500 })
  }
  return script.split('\n').map(l => l.trim()).filter(l => l !== '').join('; ')
}

interface Pending {
  marker: string
  said: string[]
  markerSeen: boolean
  resolve: () => void
  reject: (e: Error) => void
}

/** createNftSession returns a session; nft starts at the first apply. */
export function createNftSession (init: NftSessionInit): NftSession {
  const { runner } = init
  if (runner.open === undefined) throw new WarrenError('bad_firewall_config', 'an nft session needs a command runner that can open long-lived commands (runner.open)', { status: 500 })
  const open = runner.open
  const timeoutMs = init.timeoutMs ?? 10_000
  const tokenBase = `warren_sync_${randomBytes(4).toString('hex')}_`
  let seq = 0
  let starts = 0
  let proc: CommandSession | undefined
  let pending: Pending | undefined
  const queue = createSerialQueue()
  const serial = queue.run

  /** retire kills a session we no longer trust; its late output and exit are ignored. */
  function retire (p: CommandSession): void {
    if (proc === p) proc = undefined
    p.kill('SIGKILL')
  }

  /** fail rejects the pending update with an unknown outcome and retires the session. */
  function fail (p: CommandSession, message: string): void {
    const was = pending
    pending = undefined
    retire(p)
    was?.reject(new NftSessionError(message))
  }

  function onLine (p: CommandSession, line: string, stream: OutputStream): void {
    if (proc !== p) return
    const cur = pending
    if (cur === undefined || stream === 'stdout') {
      fail(p, `nft printed ${cur === undefined ? 'between updates' : 'on stdout during the update'}, which it does not for element commands: ${condenseNftError(line)}`)
      return
    }
    if (!cur.markerSeen) {
      if (line === cur.marker) {
        // The line before is the marker's own error message.
        const own = cur.said.pop()
        if (own === undefined || !own.startsWith('Error: ')) {
          fail(p, `nft answered the end-of-update marker without its error line (got ${JSON.stringify(own ?? '')})`)
          return
        }
        cur.markerSeen = true
      } else {
        cur.said.push(line)
      }
      return
    }
    if (!CARETS.test(line)) {
      fail(p, `nft printed ${JSON.stringify(condenseNftError(line))} where it marks the end-of-update marker`)
      return
    }
    pending = undefined
    p.unref()
    if (cur.said.length === 0) {
      cur.resolve()
    } else if (cur.said.some(l => l.startsWith('Error: '))) {
      cur.reject(new NftRefusedError(condenseNftError(cur.said.join('\n'))))
    } else {
      // Not an error we know, so not a refusal we can vouch for: start afresh.
      retire(p)
      cur.reject(new NftSessionError(`nft printed unexpected text during the update: ${condenseNftError(cur.said.join('\n'))}`))
    }
  }

  async function start (): Promise<CommandSession> {
    const p = await open(init.check === true ? ['nft', '--check', '-i'] : ['nft', '-i'])
    starts++
    proc = p
    p.onLine((line, stream) => onLine(p, line, stream))
    void p.exited.then(exit => {
      if (proc !== p) return
      proc = undefined
      const was = pending
      pending = undefined
      was?.reject(new NftSessionError(`\`nft -i\` ended (${exit.reason}) before it confirmed the update` +
        (was !== undefined && was.said.length > 0 ? `; it said: ${condenseNftError(was.said.join('\n'))}` : '')))
    })
    // Idle, the session must not keep the daemon running; nft exits when our end of its stdin closes.
    p.unref()
    return p
  }

  async function apply (script: string): Promise<void> {
    const line = toLine(script)
    if (line === '') return
    const p = proc ?? await start()
    const marker = `list table inet ${tokenBase}${seq++}`
    const done = new Promise<void>((resolve, reject) => { pending = { marker, said: [], markerSeen: false, resolve, reject } })
    p.ref()
    const timer = setTimeout(() => fail(p, `nft did not confirm the update within ${timeoutMs} ms`), timeoutMs)
    try {
      if (!p.write(`${line}\n${marker}\n`)) fail(p, '`nft -i` had exited before the update was sent')
      await done
    } finally {
      clearTimeout(timer)
    }
  }

  return {
    apply: script => serial(() => apply(script)),
    close: () => serial(async () => {
      const p = proc
      proc = undefined
      if (p !== undefined) await p.close()
    }),
    get pid () { return proc?.pid },
    get starts () { return starts }
  }
}
