import { Command, CommanderError } from 'commander'
import { isWarrenError } from '@warren/protocol'
import { commands } from './commands/index.js'
import { versionLine } from './version.js'

/** EXIT_FAILURE is the exit code of a command that ran and failed; EXIT_USAGE of a command line that is wrong. */
export const EXIT_FAILURE = 1
export const EXIT_USAGE = 2

/**
 * createProgram builds the `warren` command tree from the verb files listed in
 * commands/index.ts. Commander reports usage errors by throwing, so callers decide how
 * to exit.
 */
export function createProgram (): Command {
  const program = new Command('warren')
    .description('Warren: a self-hosted zero-trust overlay network')
    .version(versionLine(), '-V, --version', 'print the CLI and protocol versions')
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({
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
 * runCli runs one command line (argv as in process.argv) and returns the exit code:
 * 0, EXIT_FAILURE with one `warren: <message>` line on stderr, or EXIT_USAGE.
 */
export async function runCli (argv: string[]): Promise<number> {
  const program = createProgram()
  try {
    await program.parseAsync(argv)
    return 0
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.exitCode === 0) return 0
      return EXIT_USAGE
    }
    const message = e instanceof Error ? e.message : String(e)
    process.stderr.write(`warren: ${message}\n`)
    if (process.env.WARREN_DEBUG !== undefined && e instanceof Error && e.stack !== undefined) process.stderr.write(`${e.stack}\n`)
    return isWarrenError(e) && e.code === 'usage' ? EXIT_USAGE : EXIT_FAILURE
  }
}
