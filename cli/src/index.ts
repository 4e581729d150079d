/**
 * @warren/cli is the `warren` command. Its program can also be run in process, which is
 * how other tools embed the same verbs and how its tests run them: runCli writes only to
 * the streams it is given and returns the exit code instead of exiting.
 *
 * @example
 * ```ts
 * import { runCli } from '@warren/cli'
 * process.exitCode = await runCli(['node', 'warren', 'admin', '--state-dir', '/var/lib/warren', 'users', 'list'],
 *   { stdout: process.stdout, stderr: process.stderr })
 * ```
 */
export { runCli, createProgram, EXIT_FAILURE, EXIT_USAGE } from './program.js'
export { processIo, type CliIo } from './cli-io.js'
export { adminCommand, openAdmin, withAdmin, addListCommand, usageError, type AdminOptions } from './commands/admin.js'
export { formatTable, relativeTime, type Column } from './output.js'
export { CLI_VERSION, versionLine } from './version.js'
