import { Command, Option } from 'commander'
import { WarrenError } from '@warren/protocol'
import type { AdminClient } from '@warren/sdk'
import { printJson, printLine, printTable, type Column } from '../output.js'

/** AdminOptions are the options every `warren admin` subcommand inherits. */
export interface AdminOptions {
  controller?: string
  apiKey?: string
  stateDir?: string
  fingerprint?: string
  json?: boolean
}

/**
 * adminCommand returns the `warren admin` command, creating it on first use, so that
 * each admin verb file (admin-*.ts, and the policy verbs) can attach to it in any order.
 */
export function adminCommand (program: Command): Command {
  const existing = program.commands.find(c => c.name() === 'admin')
  if (existing !== undefined) return existing
  return program.command('admin')
    .description('manage users, auth keys, nodes, API keys and the audit log on a controller')
    .addOption(new Option('--controller <url>', 'controller URL, https://HOST:PORT (remote admin, needs --api-key)').env('WARREN_CONTROLLER'))
    .addOption(new Option('--api-key <key>', 'API key made by \'warren admin apikeys create\'').env('WARREN_API_KEY'))
    .addOption(new Option('--state-dir <dir>', 'the controller\'s state dir (on the controller host, as root; no key needed)').env('WARREN_STATE_DIR'))
    .option('--fingerprint <sha256>', 'pin the controller certificate to this SHA-256 fingerprint (default: the pin inside the API key)')
    .option('--json', 'print JSON for scripts')
}

/** usageError is a WarrenError that makes the CLI exit with the usage code (2). */
export function usageError (message: string): WarrenError {
  return new WarrenError('usage', message)
}

const HOW = 'pass --state-dir DIR (on the controller host, as root) or --controller https://HOST:PORT --api-key KEY ' +
  '(or set WARREN_STATE_DIR, or WARREN_CONTROLLER and WARREN_API_KEY)'

/**
 * openAdmin makes an admin client from the options of `cmd` and its parents. A flag on
 * the command line beats an environment variable; between two of the same kind it asks.
 */
export async function openAdmin (cmd: Command): Promise<AdminClient> {
  const o = cmd.optsWithGlobals<AdminOptions>()
  const { createAdminClient } = await import('@warren/sdk')
  const admin = adminOf(cmd)
  const from = (key: string): string | undefined => admin?.getOptionValueSource(key)
  let useSocket = o.stateDir !== undefined && o.stateDir !== ''
  const useRemote = o.controller !== undefined && o.controller !== ''
  if (useSocket && useRemote) {
    const socketFromCli = from('stateDir') === 'cli'
    const remoteFromCli = from('controller') === 'cli'
    if (socketFromCli === remoteFromCli) throw usageError('give either --state-dir or --controller, not both')
    useSocket = socketFromCli
  }
  if (useSocket) return createAdminClient({ stateDir: o.stateDir! })
  if (!useRemote) throw usageError(`no controller to manage: ${HOW}`)
  if (o.apiKey === undefined || o.apiKey === '') {
    throw usageError(`--controller ${o.controller!} needs --api-key KEY (or WARREN_API_KEY); make one on the controller host with 'warren admin --state-dir DIR apikeys create'`)
  }
  return createAdminClient({
    controller: o.controller!,
    apiKey: o.apiKey,
    ...(o.fingerprint !== undefined ? { fingerprint: o.fingerprint } : {})
  })
}

function adminOf (cmd: Command): Command | undefined {
  for (let c: Command | null = cmd; c !== null; c = c.parent) if (c.name() === 'admin') return c
  return undefined
}

/** wantsJson says whether --json was given anywhere on the admin command line. */
export function wantsJson (cmd: Command): boolean {
  return cmd.optsWithGlobals<AdminOptions>().json === true
}

/**
 * withAdmin runs `fn` with an open admin client and always closes it, so a finished
 * command never waits on a socket.
 */
export async function withAdmin<T> (cmd: Command, fn: (admin: AdminClient, json: boolean) => Promise<T>): Promise<T> {
  const admin = await openAdmin(cmd)
  try {
    return await fn(admin, wantsJson(cmd))
  } finally {
    admin.close()
  }
}

/** ListSpec describes a `list` verb: what it fetches and how its table looks. */
export interface ListSpec<T> {
  description: string
  fetch: (admin: AdminClient) => Promise<T[]>
  columns: Array<Column<T>>
  /** empty is printed instead of a table when there is nothing, with a hint what to do */
  empty: string
}

/** addListCommand adds `list` (alias `ls`) to `parent`: a table for people, the array for --json. */
export function addListCommand<T> (parent: Command, spec: ListSpec<T>): void {
  parent.command('list').alias('ls')
    .description(spec.description)
    .action(async (_opts: unknown, cmd: Command) => {
      await withAdmin(cmd, async (admin, json) => {
        const rows = await spec.fetch(admin)
        if (json) printJson(rows)
        else printTable(rows, spec.columns, spec.empty)
      })
    })
}

/** addExpireCommand adds `expire ID` (alias `revoke`) to `parent` for a kind of key. */
export function addExpireCommand (parent: Command, what: string, description: string, expire: (admin: AdminClient, id: string) => Promise<{ id: string }>): void {
  parent.command('expire <id>').alias('revoke')
    .description(description)
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      await withAdmin(cmd, async (admin, json) => {
        const k = await expire(admin, id)
        if (json) printJson(k)
        else printLine(`expired ${what} ${k.id}`)
      })
    })
}

/** register adds `warren admin` itself; its verbs live in admin-*.ts. */
export function register (program: Command): void {
  adminCommand(program)
}
