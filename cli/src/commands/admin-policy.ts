import { readFile } from 'node:fs/promises'
import type { Command } from 'commander'
import { WarrenError, isWarrenError, type PolicyAccess, type PolicyCapChange, type PolicyCheckResponse, type PolicyDiffResponse } from '@warren/protocol'
import { createPolicyAdmin, type AdminClient, type PolicyAdmin } from '@warren/sdk'
import { adminCommand, usageError, withAdmin } from './admin.js'
import { formatTable, printJson, printLine, printTable, relativeTime } from '../output.js'
import { cliIo } from '../cli-io.js'

/** POLICY_ERROR_CODES are the controller's answers for a policy it refused; their lines carry line:column. */
const POLICY_ERROR_CODES = new Set(['policy_invalid', 'policy_tests_failed'])

/**
 * located puts the file name in front of each `line:column: ...` line of a controller
 * message, so editors and people can jump to `FILE:line:column`.
 */
export function located (file: string, lines: readonly string[]): string[] {
  return lines.map(l => /^\d+:\d+: /.test(l) ? `${file}:${l}` : l)
}

/** readPolicyFile reads a policy file (`-` is standard input) with an error that names it. */
async function readPolicyFile (file: string): Promise<string> {
  try {
    if (file === '-') {
      const chunks: Buffer[] = []
      for await (const c of cliIo().stdin) chunks.push(c as Buffer)
      return Buffer.concat(chunks).toString('utf8')
    }
    return await readFile(file, 'utf8')
  } catch (e) {
    throw new WarrenError('policy_file', `cannot read policy file ${file}: ${(e as Error).message}`)
  }
}

/** refusal is the one error a rejected policy ends with: a summary, then every problem at FILE:line:column. */
function refusal (file: string, what: string, problems: readonly string[]): WarrenError {
  const n = problems.filter(p => /^\d+:\d+: /.test(p)).length
  return new WarrenError('policy_invalid', `${file}: ${what} (${n} problem${n === 1 ? '' : 's'}):\n${located(file, problems).join('\n')}`)
}

/** printWarnings shows warnings (users that do not exist yet) on stderr, placed in the file. */
function printWarnings (file: string, warnings: readonly string[]): void {
  for (const w of located(file, warnings)) cliIo().stderr.write(`warning: ${w}\n`)
}

/**
 * checked runs the controller's check of `text` and throws every problem at once, so
 * that `set` and `check` fail before anything changes and say where.
 */
async function checked (policy: PolicyAdmin, file: string, text: string, what: string): Promise<PolicyCheckResponse> {
  const r = await policy.check(text)
  if (!r.ok) throw refusal(file, what, r.errors)
  return r
}

/** rethrowPlaced rewrites a controller refusal so its lines name the file. */
function rethrowPlaced (file: string, e: unknown): never {
  if (isWarrenError(e) && POLICY_ERROR_CODES.has(e.code)) {
    const [head, ...lines] = e.message.split('\n')
    throw new WarrenError(e.code, `${file}: ${head!.replace(/:$/, '')}:\n${located(file, lines).join('\n')}`)
  }
  throw e
}

/** parseTarget reads `DST:PORT` (`[v6]:PORT` for IPv6); ICMP needs no port. */
export function parseTarget (target: string, proto: string | undefined): { dst: string, port: number } {
  const portless = proto !== undefined && /^(icmp|icmpv6|ipv6-icmp|1|58)$/i.test(proto)
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(target) ?? /^(.+):(\d+)$/.exec(target)
  if (m !== null) {
    const port = Number(m[2])
    if (port > 65535) throw usageError(`port ${m[2]!} in '${target}' is out of range: use 0-65535`)
    return { dst: m[1]!, port }
  }
  if (portless) return { dst: target.replace(/^\[(.*)\]$/, '$1'), port: 0 }
  throw usageError(`'${target}' needs a port: write DST:PORT, for example tag:db:5432 or [fd7a::1]:22 (ICMP needs none: --proto icmp)`)
}

const ACCESS_COLUMNS = [
  { header: 'change', value: (a: PolicyAccess & { change: string }) => a.change },
  { header: 'source', value: (a: PolicyAccess) => a.src },
  { header: 'destination', value: (a: PolicyAccess) => a.dst },
  { header: 'proto', value: (a: PolicyAccess) => a.proto },
  { header: 'ports', value: (a: PolicyAccess) => a.ports }
]

const CAP_MARKS: Record<PolicyCapChange['change'], string> = { gained: '+ gained', lost: '- lost', changed: '~ changed' }

/** capValuesText shows a capability change's values: the new ones, the old ones, or old -> new. */
function capValuesText (c: PolicyCapChange): string {
  const text = (v: unknown[] | undefined): string => JSON.stringify(v ?? [])
  if (c.change === 'gained') return text(c.after)
  if (c.change === 'lost') return text(c.before)
  return `${text(c.before)} -> ${text(c.after)}`
}

const CAP_COLUMNS = [
  { header: 'change', value: (c: PolicyCapChange) => CAP_MARKS[c.change] },
  { header: 'source', value: (c: PolicyCapChange) => c.src },
  { header: 'destination', value: (c: PolicyCapChange) => c.dst },
  { header: 'capability', value: (c: PolicyCapChange) => c.cap },
  { header: 'values', value: capValuesText }
]

const VIEWS = [['identity', 'between identities (users, groups, tags, hosts)'], ['node', 'between nodes']] as const

/**
 * formatDiff shows gained and lost access as two tables, between identities and between
 * nodes, then the capabilities gained, lost or changed (with their values) in the same views.
 */
export function formatDiff (d: PolicyDiffResponse): string {
  const rows = [...d.gained.map(a => ({ ...a, change: '+ gained' })), ...d.lost.map(a => ({ ...a, change: '- lost' }))]
  const caps = d.caps ?? []
  if (rows.length === 0 && caps.length === 0) return 'no access changes\n'
  const parts: string[] = []
  for (const [kind, title] of VIEWS) {
    const some = rows.filter(r => r.kind === kind)
    if (some.length > 0) parts.push(`${title}:\n${formatTable(some, ACCESS_COLUMNS)}`)
  }
  for (const [kind, title] of VIEWS) {
    const some = caps.filter(c => c.kind === kind)
    if (some.length > 0) parts.push(`capabilities ${title}:\n${formatTable(some, CAP_COLUMNS)}`)
  }
  return parts.join('\n')
}

async function withPolicy<T> (cmd: Command, fn: (policy: PolicyAdmin, json: boolean, admin: AdminClient) => Promise<T>): Promise<T> {
  return await withAdmin(cmd, async (admin, json) => await fn(createPolicyAdmin(admin), json, admin))
}

/**
 * register adds `warren admin policy get|set|check|test|diff|explain|history|rollback`.
 * A policy is refused whole (every problem at FILE:line:column, exit 1) or applied whole.
 */
export function register (program: Command): void {
  const policy = adminCommand(program).command('policy').description('show, check, change and roll back the access policy')

  policy.command('get')
    .description('print the policy in force (the file as it was set; --json adds its version)')
    .action(async (_opts: unknown, cmd: Command) => {
      await withPolicy(cmd, async (p, json) => {
        const info = await p.get()
        if (json) printJson(info)
        else cliIo().stdout.write(info.text.endsWith('\n') ? info.text : `${info.text}\n`)
      })
    })

  policy.command('set <file>')
    .description('check a policy file (syntax, names, its tests) and apply it whole, or change nothing ("-" reads stdin)')
    .option('-m, --message <msg>', 'why, for the history')
    .action(async (file: string, opts: { message?: string }, cmd: Command) => {
      const text = await readPolicyFile(file)
      await withPolicy(cmd, async (p, json) => {
        await checked(p, file, text, 'not applied; the policy in force is unchanged')
        const r = await p.set(text, opts.message).catch(e => rethrowPlaced(file, e))
        if (json) { printJson(r); return }
        printWarnings(file, r.warnings)
        printLine(`applied ${file} as policy v${r.version}`)
      })
    })

  policy.command('check <file>')
    .description('check a policy file without applying it: syntax, names and its tests')
    .action(async (file: string, _opts: unknown, cmd: Command) => {
      const text = await readPolicyFile(file)
      await withPolicy(cmd, async (p, json) => {
        const r = await p.check(text)
        if (json) printJson(r)
        if (!r.ok) {
          if (json) throw new WarrenError('policy_invalid', `${file}: ${r.errors.length} problem(s)`)
          throw refusal(file, 'invalid', r.errors)
        }
        if (json) return
        printWarnings(file, r.warnings)
        printLine(`${file}: ok (syntax, names and tests)`)
      })
    })

  policy.command('test [file]')
    .description('run the tests and sshTests sections of a policy file, or of the policy in force')
    .action(async (file: string | undefined, _opts: unknown, cmd: Command) => {
      const text = file === undefined ? undefined : await readPolicyFile(file)
      await withPolicy(cmd, async (p, json) => {
        const where = file ?? `policy v${(await p.get()).version}`
        const r = await p.check(text)
        if (json) printJson(r)
        if (!r.ok) {
          if (json) throw new WarrenError('policy_tests_failed', `${where}: ${r.errors.length} problem(s)`)
          const onlyTests = r.errors.every(e => /^\d+:\d+: (ssh )?test \d+: /.test(e))
          throw refusal(where, onlyTests ? 'tests fail' : 'invalid, so its tests cannot run', r.errors)
        }
        if (!json) printLine(`${where}: all tests pass`)
      })
    })

  policy.command('diff <file>')
    .description('show the access and capabilities a policy file would gain and lose against the policy in force, by name')
    .action(async (file: string, _opts: unknown, cmd: Command) => {
      const text = await readPolicyFile(file)
      await withPolicy(cmd, async (p, json) => {
        const d = await p.diff(text).catch(e => rethrowPlaced(file, e))
        if (json) printJson(d)
        else cliIo().stdout.write(formatDiff(d))
      })
    })

  policy.command('explain <src> <dst>')
    .description('say which rules allow SRC to reach DST:PORT (users, tags, hosts, node names or IPs), or that none does, and which grants give SRC capabilities at DST')
    .option('--proto <proto>', 'protocol name or IANA number (default tcp)')
    .action(async (src: string, target: string, opts: { proto?: string }, cmd: Command) => {
      const { dst, port } = parseTarget(target, opts.proto)
      await withPolicy(cmd, async (p, json) => {
        const r = await p.explain({ src, dst, port, ...(opts.proto !== undefined ? { proto: opts.proto } : {}) })
        if (json) printJson(r)
        else printLine(r.message)
      })
    })

  policy.command('history')
    .description('list the policy versions: version, who, when, message')
    .action(async (_opts: unknown, cmd: Command) => {
      await withPolicy(cmd, async (p, json) => {
        const versions = await p.history()
        if (json) { printJson(versions); return }
        const current = (await p.get()).version
        printTable(versions, [
          { header: 'version', value: v => `${v.version === current ? '*' : ' '}${v.version}` },
          { header: 'who', value: v => v.actor },
          { header: 'when', value: v => `${v.time.slice(0, 19).replace('T', ' ')}Z (${relativeTime(v.time)})` },
          { header: 'message', value: v => v.message === '' ? '-' : v.message }
        ], 'no policy set yet: the built-in default (allow all) is in force; set one with \'warren admin policy set FILE\'')
      })
    })

  policy.command('rollback <version>')
    .description('make an earlier version the policy in force again, as a new version (checked again)')
    .option('-m, --message <msg>', 'why, for the history (default: rollback to vN)')
    .action(async (version: string, opts: { message?: string }, cmd: Command) => {
      if (!/^v?\d+$/.test(version)) throw usageError(`'${version}' is not a policy version: give a number from 'warren admin policy history', for example 3`)
      const n = Number(version.replace(/^v/, ''))
      await withPolicy(cmd, async (p, json) => {
        const r = await p.rollback(n, opts.message).catch(e => rethrowPlaced(`policy v${n}`, e))
        if (json) { printJson(r); return }
        printWarnings(`policy v${n}`, r.warnings)
        printLine(`rolled back to v${n}: now policy v${r.version}`)
      })
    })
}
