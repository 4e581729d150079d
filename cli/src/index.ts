/**
 * @warren/cli is the `warren` command. Its program can also be run in process, which is
 * how other tools embed the same verbs.
 *
 * @example
 * ```ts
 * import { runCli } from '@warren/cli'
 * process.exitCode = await runCli(['node', 'warren', 'admin', '--state-dir', '/var/lib/warren', 'users', 'list'])
 * ```
 */
export { runCli, createProgram, EXIT_FAILURE, EXIT_USAGE } from './program.js'
export { adminCommand, openAdmin, withAdmin, addListCommand, usageError, type AdminOptions } from './commands/admin.js'
export { formatTable, relativeTime, type Column } from './output.js'
export { CLI_VERSION, versionLine } from './version.js'
