import { execa } from 'execa'

/**
 * runCommand is the relay's one seam to system tools (nft): LC_ALL=C, stdin from
 * `input` (never logged), and an error that names the command, its exit code and stderr.
 */
export async function runCommand (argv: readonly string[], input = ''): Promise<string> {
  const r = await execa(argv[0]!, argv.slice(1), { input, reject: false, env: { LC_ALL: 'C' }, timeout: 30_000 })
  if (r.exitCode !== 0 || r.failed) {
    const said = `${r.stderr ?? ''}`.trim().slice(0, 2000)
    throw Object.assign(new Error(`\`${argv.join(' ')}\` failed (exit ${r.exitCode ?? '?'})${said === '' ? '' : `: ${said}`}`), { code: 'command_failed' })
  }
  return `${r.stdout ?? ''}`
}
