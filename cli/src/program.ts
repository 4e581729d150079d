import { Command, CommanderError } from 'commander'
import { isWarrenError } from '@warren/protocol'
import { commands } from './commands/index.js'
import { versionLine } from './version.js'
import { processIo, resolveIo, withCliIo, type CliIo, type ResolvedCliIo } from './cli-io.js'

/** EXIT_FAILURE is the exit code of a command that ran and failed; EXIT_USAGE of a command line that is wrong. */
export const EXIT_FAILURE = 1
export const EXIT_USAGE = 2

/** helpWidth is a stream's terminal width, or 80 (commander's default) when it is not a terminal. */
function helpWidth (stream: NodeJS.WritableStream): number {
  const tty = stream as { isTTY?: boolean, columns?: number }
  return tty.isTTY === true ? tty.columns ?? 80 : 80
}

/**
 * createProgram builds the `warren` command tree from the verb files listed in
 * commands/index.ts. Commander reports usage errors by throwing, so callers decide how
 * to exit, and it prints help and errors to the streams of `io` (default: the process's).
 */
export function createProgram (io: CliIo = processIo()): Command {
  const { stdout, stderr } = io
  const program = new Command('warren')
    .description('Warren: a self-hosted zero-trust overlay network')
    .version(versionLine(), '-V, --version', 'print the CLI and protocol versions')
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({
      writeOut: str => { stdout.write(str) },
      writeErr: str => { stderr.write(str) },
      getOutHelpWidth: () => helpWidth(stdout),
      getErrHelpWidth: () => helpWidth(stderr),
      outputError: (str, write) => { write(`warren: ${str.replace(/^error: /, '')}`) }
    })
    .exitOverride()
  for (const c of commands) c.register(program)
  // Every subcommand must throw instead of exiting, and print errors the same way.
  const walk = (cmd: Command): void => {
    cmd.exitOverride().configureOutput(program.configureOutput())
    cmd.commands.forEach(walk)
  }
  program.commands.forEach(walk)
  return program
}

/**
 * parseWithEnv parses argv with `env` as the environment its options read. Commander
 * reads option variables from process.env while it parses, and all of that parsing
 * happens before the first await, so the swap covers only that synchronous stretch:
 * runs that share the process never see each other's environment.
 */
async function parseWithEnv (program: Command, argv: string[], env: ResolvedCliIo['env']): Promise<Command> {
  if (env === process.env) return await program.parseAsync(argv)
  const saved = process.env
  process.env = env
  let parsed: Promise<Command>
  try {
    parsed = program.parseAsync(argv)
  } finally {
    process.env = saved
  }
  return await parsed
}

/**
 * runCli runs one command line (argv as in process.argv) and returns the exit code:
 * 0, EXIT_FAILURE with one `warren: <message>` line on stderr, or EXIT_USAGE. It writes
 * only to the streams of `io` (default: the process's) and never exits the process.
 */
export async function runCli (argv: string[], io: CliIo = processIo()): Promise<number> {
  const run = resolveIo(io)
  return await withCliIo(run, async () => {
    try {
      await parseWithEnv(createProgram(run), argv, run.env)
      return 0
    } catch (e) {
      if (e instanceof CommanderError) {
        if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.exitCode === 0) return 0
        return EXIT_USAGE
      }
      const message = e instanceof Error ? e.message : String(e)
      run.stderr.write(`warren: ${message}\n`)
      if (run.env.WARREN_DEBUG !== undefined && e instanceof Error && e.stack !== undefined) run.stderr.write(`${e.stack}\n`)
      return isWarrenError(e) && e.code === 'usage' ? EXIT_USAGE : EXIT_FAILURE
    }
  })
}
